"""Versioned labels of the root keys kept in the token."""

from __future__ import annotations

import enum
import re


class RootKind(enum.Enum):
    """The roots ``coffre init`` creates; each may have several versions."""

    KEK = "kek"  # AES-256, wraps/seals what must survive at rest
    PEPPER = "pepper"  # HMAC-SHA256 secret, peppers passwords and PINs
    AUDIT = "audit"  # HMAC-SHA256 secret, chains the audit log
    BIND = "bind"  # HMAC-SHA256 secret, binds public keys and wrapped keys to their owners
    UKW = "ukw"  # AES-256 wrap/unwrap only; users' private keys, unwrap template: never extractable


PREFIX = "coffre"
_LABEL = re.compile(r"^coffre-(kek|pepper|audit|bind|ukw)-v([1-9][0-9]{0,5})$")


def label_for(kind: RootKind, version: int) -> str:
    if version < 1:
        raise ValueError("root key versions start at 1")
    return f"{PREFIX}-{kind.value}-v{version}"


def parse_label(label: str) -> tuple[RootKind, int] | None:
    match = _LABEL.match(label)
    if match is None:
        return None
    return RootKind(match.group(1)), int(match.group(2))
