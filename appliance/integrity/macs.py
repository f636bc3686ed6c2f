"""Un-anchored MACs under the ``bind`` root for short-lived or append-only rows
(login tickets, one-time tokens, a session's last-seen time) and for the audit
head (under the ``audit`` root). Stored as ``"label:hex"``; the label lets the
root rotate while old MACs keep verifying."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hsm.errors import KeyNotFound
from hsm.keystore import Work
from hsm.labels import RootKind


def _input(purpose: str, deployment: str, parts: tuple[Any, ...]) -> bytes:
    return json.dumps([f"coffre/{purpose}/v1", deployment, *parts], separators=(",", ":")).encode("ascii")


def make(work: Work, purpose: str, deployment: str, *parts: Any, kind: RootKind = RootKind.BIND) -> str:
    label, mac = work.mac(kind, _input(purpose, deployment, parts))
    return f"{label}:{mac.hex()}"


def check(
    work: Work, stored: str | None, purpose: str, deployment: str, *parts: Any, kind: RootKind = RootKind.BIND
) -> bool:
    if not stored or ":" not in stored:
        return False
    label, _, expected = stored.partition(":")
    try:
        _, mac = work.mac(kind, _input(purpose, deployment, parts), label)
    except KeyNotFound:
        return False
    return hmac.compare_digest(mac.hex(), expected)


def password_fingerprint(password_hash: str | None) -> str:
    """Names the password a ticket or reset token was issued for: when the password
    changes, every ticket and pending reset token issued before stops verifying."""
    return hashlib.sha256((password_hash or "").encode("utf-8")).hexdigest()[:32]
