"""Key scheme of a transfer (docs/security.md, "Transfers").

- transfer key T: 32 bytes from the token's RNG.
- password wrapping: W = Argon2id(HMAC-SHA256(HSM pepper, "transfer" 0 id 0 password),
  salt 16 B) and T is AES-256-GCM sealed under W (associated data names the transfer).
  The pepper lives in the token, so a database copy cannot be attacked offline; the
  database and the token without the password open nothing.
- each file: a data key D (token RNG) sealed under T; content in the file STREAM format.
- a download token G (32 random bytes, only in the recipient's hands): T sealed under
  HKDF(G), kept for minutes in ``transfer_grants``; only SHA-256(G) is stored.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance import peppered
from appliance.config import CryptoSettings
from hsm.errors import DecryptionFailed
from hsm.keystore import Keystore


class WrongKey(Exception):
    """A password, token or blob that does not open (no reason given)."""


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    return peppered.seal(key, plaintext, context)


def open_(key: bytes, blob: bytes, context: bytes) -> bytes:
    try:
        return peppered.open_(key, blob, context)
    except DecryptionFailed:
        raise WrongKey() from None


def key_context(transfer_id: str) -> bytes:
    return f"coffre/transfer-key/v1|transfer={transfer_id}".encode("ascii")


def file_context(transfer_id: str, file_id: str, what: str) -> bytes:
    return f"coffre/transfer-{what}/v1|transfer={transfer_id}|file={file_id}".encode("ascii")


def message_context(transfer_id: str) -> bytes:
    return f"coffre/transfer-message/v1|transfer={transfer_id}".encode("ascii")


def code_context(transfer_id: str, recipient_id: str) -> bytes:
    return f"coffre/transfer-code/v1|transfer={transfer_id}|recipient={recipient_id}".encode("ascii")


def draft_context(transfer_id: str) -> bytes:
    return f"coffre/transfer-draft/v1|transfer={transfer_id}".encode("ascii")


def grant_context(transfer_id: str, recipient_id: str) -> bytes:
    return f"coffre/transfer-grant/v1|transfer={transfer_id}|recipient={recipient_id}".encode("ascii")


def _message(purpose: bytes, transfer_id: str, secret: str) -> bytes:
    return purpose + b"\x00" + transfer_id.encode("ascii") + b"\x00" + secret.encode("utf-8")


def password_key(
    keystore: Keystore,
    crypto: CryptoSettings,
    transfer_id: str,
    password: str,
    salt: bytes,
    label: str | None,
    purpose: bytes = b"transfer",
) -> tuple[str, bytes, str]:
    """(pepper label, wrapping key, KDF description) (appliance/peppered.py).
    ``purpose`` separates the sender's password (``transfer``) from a recipient's
    e-mailed code (``transfer-code`` ‖ recipient)."""
    return peppered.derive(keystore, _message(purpose, transfer_id, password), salt, crypto, label)


def password_key_for(
    keystore: Keystore,
    configured: CryptoSettings,
    transfer_id: str,
    password: str,
    salt: bytes,
    label: str,
    kdf: str,
    purpose: bytes = b"transfer",
) -> bytes:
    """The wrapping key again, with the recorded parameters; ``WrongKey`` when they
    are malformed or above the ceiling (transfer rows carry no MAC: a database
    writer's value must not exhaust memory or answer 500)."""
    params = peppered.bounded(kdf, configured)
    if params is None:
        raise WrongKey()
    return peppered.derive(keystore, _message(purpose, transfer_id, password), salt, params, label)[1]


def code_purpose(recipient_id: str) -> bytes:
    return b"transfer-code\x00" + recipient_id.encode("ascii")


def new_code() -> str:
    """12 characters from an unambiguous alphabet (~59 bits), shown as XXXX-XXXX-XXXX."""
    alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalize_code(code: str) -> str:
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}" if len(raw) == 12 else code


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def grant_key(token: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"coffre/transfer-grant/v1").derive(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()
