"""Opaque bearer values handed to clients, and what the server keeps of them.

- one-time tokens (enrollment, password reset) and login tickets: 256 random
  bits; the database keeps only their SHA-256;
- session tokens: a 128-bit public id and a 256-bit secret that only the client
  holds. The server keeps a verifier derived from the secret; the secret also
  derives the key that wraps the user's private key for the session's life.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENROLL_PREFIX = "cfe_"
RESET_PREFIX = "cfr_"
TICKET_PREFIX = "cft_"
SESSION_PREFIX = "cfs_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# A session token is accepted in exactly one spelling: unpadded URL-safe base64 of 48
# bytes (no `+`, `/`, `=`, whitespace or other characters a lenient decoder skips).
# One-time tokens and login tickets need no parser: the database holds the SHA-256 of
# the exact string handed out, so any other spelling names nothing.
_SESSION = re.compile(r"cfs_[A-Za-z0-9_-]{64}")


def _strict_b64(text: str, size: int) -> bytes | None:
    """Decode unpadded URL-safe base64 of exactly ``size`` bytes, or None unless
    ``text`` is the one canonical spelling of those bytes."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    if len(raw) != size or not hmac.compare_digest(_b64(raw), text):
        return None
    return raw


def new_opaque(prefix: str) -> str:
    return prefix + _b64(secrets.token_bytes(32))


def opaque_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_id() -> str:
    return secrets.token_hex(16)


def is_id(value: object) -> bool:
    """Ids are 32 lowercase hex characters; anything else names nothing (404)."""
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class SessionToken:
    session_id: str  # 32 hex chars
    secret: bytes = field(repr=False)  # 32 bytes, held by the client only

    def encode(self) -> str:
        return SESSION_PREFIX + _b64(bytes.fromhex(self.session_id) + self.secret)

    @classmethod
    def new(cls) -> SessionToken:
        return cls(session_id=secrets.token_hex(16), secret=secrets.token_bytes(32))

    @classmethod
    def parse(cls, token: str) -> SessionToken | None:
        """The token, or None unless ``token`` is exactly what :meth:`encode` produces."""
        if not isinstance(token, str) or _SESSION.fullmatch(token) is None:
            return None
        raw = _strict_b64(token[len(SESSION_PREFIX) :], 48)
        if raw is None:
            return None
        return cls(session_id=raw[:16].hex(), secret=raw[16:])

    def _derive(self, purpose: bytes) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=bytes.fromhex(self.session_id),
            info=b"coffre/session/" + purpose + b"/v1",
        ).derive(self.secret)

    def verifier(self) -> bytes:
        return self._derive(b"verifier")

    def wrapping_key(self) -> bytes:
        return self._derive(b"wrap")

    def cache_key(self) -> bytes:
        return self._derive(b"cache")

    def matches(self, stored_verifier: bytes) -> bool:
        return hmac.compare_digest(self.verifier(), stored_verifier)
