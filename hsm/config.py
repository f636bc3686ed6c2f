"""Where the PKCS#11 module and token are, and how the token PIN is read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class HsmConfig:
    """Settings of the HSM layer.

    The token PIN is read from ``pin_file`` or from the environment variable named
    by ``pin_env``; never from the command line.
    """

    module: str
    token_label: str
    pin_file: str | None = None
    pin_env: str | None = None
    softhsm_conf: str | None = None
    pool_size: int = 8
    acquire_timeout: float = 5.0
    # Keys cached inside the token per process (vault keys, unwrapped private keys).
    cache_entries: int = 256
    cache_ttl_seconds: float = 60.0
    # How long a node trusts the newest root label before asking the token again
    # (a rotation done elsewhere is picked up within this time). Rotation jobs wait
    # this long after a new version appears before their final sweep: keep it the
    # same on every node.
    root_ttl_seconds: float = 30.0
    extra: dict[str, str] = field(default_factory=dict)

    def read_pin(self) -> str:
        if self.pin_env:
            value = os.environ.get(self.pin_env)
            if value:
                return value.strip()
        if self.pin_file:
            path = Path(self.pin_file)
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read the token PIN file {path}: {exc.strerror}") from exc
            if value:
                return value
        raise ValueError("no token PIN configured: set hsm.pin_file or hsm.pin_env")
