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
import os
import secrets

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.config import CryptoSettings
from hsm.keystore import Keystore
from hsm.labels import RootKind

NONCE = 12


class WrongKey(Exception):
    """A password, token or blob that does not open (no reason given)."""


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_(key: bytes, blob: bytes, context: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], context)
    except (InvalidTag, ValueError):
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


def password_key(
    keystore: Keystore,
    crypto: CryptoSettings,
    transfer_id: str,
    password: str,
    salt: bytes,
    label: str | None,
    purpose: bytes = b"transfer",
) -> tuple[str, bytes, str]:
    """(pepper label, wrapping key, KDF description). The token session is held for
    the HMAC only, not during Argon2id. ``purpose`` separates the sender's password
    (``transfer``) from a recipient's e-mailed code (``transfer-code`` ‖ recipient)."""
    with keystore.work() as work:
        label, mac = work.mac(
            RootKind.PEPPER,
            purpose + b"\x00" + transfer_id.encode("ascii") + b"\x00" + password.encode("utf-8"),
            label,
        )
    key = hash_secret_raw(
        mac,
        salt,
        time_cost=crypto.argon2_time_cost,
        memory_cost=crypto.argon2_memory_kib,
        parallelism=crypto.argon2_parallelism,
        hash_len=32,
        type=Type.ID,
    )
    kdf = f"argon2id$t={crypto.argon2_time_cost}$m={crypto.argon2_memory_kib}$p={crypto.argon2_parallelism}"
    return label, key, kdf


def password_key_for(
    keystore: Keystore,
    transfer_id: str,
    password: str,
    salt: bytes,
    label: str,
    kdf: str,
    purpose: bytes = b"transfer",
) -> bytes:
    params = dict(part.split("=", 1) for part in kdf.split("$")[1:])
    crypto = CryptoSettings(
        argon2_time_cost=int(params["t"]), argon2_memory_kib=int(params["m"]), argon2_parallelism=int(params["p"])
    )
    return password_key(keystore, crypto, transfer_id, password, salt, label, purpose)[1]


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
