"""Keys from a human secret (a PIN, a send's one-time code, a transfer's password or
e-mailed code): HMAC-SHA256 under the HSM pepper root, then Argon2id with a per-use
salt. The pepper lives in the token, so a database copy cannot be attacked offline.

One implementation for every caller (appliance/passwords.py, appliance/sends/,
appliance/transfers/), with the parameters recorded as ``argon2id$t=..$m=..$p=..``
and parsed strictly on the way back, and one AES-256-GCM box (96-bit random nonce
prepended, the caller's context as associated data) for what such a key seals.
"""

from __future__ import annotations

import os
import re
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.config import CryptoSettings
from hsm.errors import DecryptionFailed
from hsm.keystore import Keystore, Work
from hsm.labels import RootKind

NONCE = 12
TAG = 16
_KDF = re.compile(r"argon2id\$t=([0-9]{1,4})\$m=([0-9]{1,9})\$p=([0-9]{1,3})")


def describe(crypto: CryptoSettings) -> str:
    return f"argon2id$t={crypto.argon2_time_cost}$m={crypto.argon2_memory_kib}$p={crypto.argon2_parallelism}"


def stretch(mac: bytes, salt: bytes, crypto: CryptoSettings) -> bytes:
    return hash_secret_raw(
        mac,
        salt,
        time_cost=crypto.argon2_time_cost,
        memory_cost=crypto.argon2_memory_kib,
        parallelism=crypto.argon2_parallelism,
        hash_len=32,
        type=Type.ID,
    )


def derive_in(work: Work, message: bytes, salt: bytes, crypto: CryptoSettings, label: str | None) -> tuple[str, bytes]:
    """(pepper label, 256-bit key) inside the caller's token session."""
    label, mac = work.mac(RootKind.PEPPER, message, label)
    return label, stretch(mac, salt, crypto)


def derive(
    keystore: Keystore, message: bytes, salt: bytes, crypto: CryptoSettings, label: str | None
) -> tuple[str, bytes, str]:
    """(pepper label, key, KDF description); the token session is held for the HMAC
    only, not during Argon2id."""
    with keystore.work() as work:
        label, mac = work.mac(RootKind.PEPPER, message, label)
    return label, stretch(mac, salt, crypto), describe(crypto)


def parse(kdf: Any) -> CryptoSettings | None:
    """The recorded parameters, or None when malformed."""
    match = _KDF.fullmatch(kdf) if isinstance(kdf, str) else None
    if match is None:
        return None
    t, m, p = (int(g) for g in match.groups())
    if not (t >= 1 and p >= 1 and m >= 8 * p):
        return None
    return CryptoSettings(argon2_time_cost=t, argon2_memory_kib=m, argon2_parallelism=p)


def bounded(kdf: Any, configured: CryptoSettings) -> CryptoSettings | None:
    """``parse``, refusing parameters above the configured value or the built-in
    default, whichever is higher (for rows no MAC covers: a database writer's value
    must not exhaust memory or time; an administrator who lowers the cost keeps what
    is pending)."""
    params = parse(kdf)
    if params is None:
        return None
    default = CryptoSettings()
    if not (
        params.argon2_time_cost <= max(configured.argon2_time_cost, default.argon2_time_cost)
        and params.argon2_parallelism <= max(configured.argon2_parallelism, default.argon2_parallelism)
        and params.argon2_memory_kib <= max(configured.argon2_memory_kib, default.argon2_memory_kib)
    ):
        return None
    return params


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_(key: bytes, blob: bytes, context: bytes) -> bytes:
    """``DecryptionFailed`` on a wrong key, a short blob or any tampering."""
    if len(blob) < NONCE + TAG or len(key) != 32:
        raise DecryptionFailed()
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], context)
    except InvalidTag:
        raise DecryptionFailed() from None
