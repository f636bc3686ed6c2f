"""How a send's copy is sealed, and what binds the row together.

- ``payload_context`` is the associated data of every layer: it names the send,
  its mode, sender, recipient, token hash and stage, so a database writer who
  points a send at another recipient or another token makes it fail to open.
- ``row_parts`` are the columns the row MAC (bind root) covers: who may open the
  send, by which token, how many views are left, how many codes failed, until when.
- One-time codes: 12 characters from an unambiguous alphabet (~59 bits), turned
  into a key by HMAC-SHA256 under the HSM pepper (so a stolen database cannot be
  attacked offline) and Argon2id with a per-send salt.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.config import CryptoSettings
from appliance.items import ItemFields
from appliance.sends.models import Send
from hsm.errors import DecryptionFailed
from hsm.keystore import Keystore
from hsm.labels import RootKind

# What a send copies: the item's fields but its TOTP secret (a second factor is not passed on).
FIELDS = ("title", "username", "password", "url", "notes")
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_LENGTH = 12
_NONCE = 12


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalize_code(code: Any) -> str | None:
    """The code's canonical form (case, dashes and spaces ignored), or None."""
    if not isinstance(code, str) or len(code) > 64:
        return None
    clean = "".join(c for c in code.upper() if c not in "- ")
    if len(clean) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in clean):
        return None
    return clean


def payload_context(send: Send, stage: str) -> bytes:
    return (
        f"coffre/send-payload/v1|send={send.id}|mode={send.mode}|sender={send.sender_id}"
        f"|recipient={send.recipient_id or ''}|token={send.token_hash or ''}|stage={stage}"
    ).encode("ascii")


def row_parts(send: Send) -> tuple[Any, ...]:
    return (
        send.id,
        send.mode,
        send.sender_id,
        send.recipient_id,
        send.recipient_email,
        send.token_hash,
        send.state,
        int(send.max_views),
        int(send.views_used),
        int(send.failed_codes),
        repr(float(send.created_at)),
        repr(float(send.expires_at)),
        None if send.code_salt is None else bytes(send.code_salt).hex(),
        send.code_pepper,
        send.code_kdf,
        send.wrapped_key_mac,
        send.payload is not None,
    )


def encode_fields(fields: ItemFields) -> bytes:
    return json.dumps({name: getattr(fields, name) for name in FIELDS}).encode("utf-8")


def decode_fields(raw: bytes) -> ItemFields:
    value = json.loads(raw.decode("utf-8"))
    return ItemFields(**{name: value.get(name) for name in FIELDS})


def code_key(
    keystore: Keystore, crypto: CryptoSettings, send_id: str, code: str, salt: bytes, label: str | None
) -> tuple[str, bytes, str]:
    """(pepper label, 256-bit key, KDF description). The token session is held for
    the HMAC only, not during Argon2id."""
    with keystore.work() as work:
        label, mac = work.mac(
            RootKind.PEPPER, b"send-code\x00" + send_id.encode("ascii") + b"\x00" + code.encode(), label
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


_KDF = re.compile(r"argon2id\$t=([0-9]{1,4})\$m=([0-9]{1,9})\$p=([0-9]{1,3})")


def kdf_params(kdf: Any, configured: CryptoSettings) -> CryptoSettings | None:
    """The Argon2id parameters recorded with a send, or None when malformed or above
    the ceiling: each at most the configured value or the built-in default, whichever
    is higher (an administrator who lowers the cost keeps the pending sends). Checked
    after the row MAC; the bound keeps a bad value from exhausting memory or time."""
    if not isinstance(kdf, str):
        return None
    match = _KDF.fullmatch(kdf)
    if match is None:
        return None
    t, m, p = (int(g) for g in match.groups())
    default = CryptoSettings()
    if not (
        1 <= t <= max(configured.argon2_time_cost, default.argon2_time_cost)
        and 1 <= p <= max(configured.argon2_parallelism, default.argon2_parallelism)
        and 8 * p <= m <= max(configured.argon2_memory_kib, default.argon2_memory_kib)
    ):
        return None
    return CryptoSettings(argon2_time_cost=t, argon2_memory_kib=m, argon2_parallelism=p)


def code_key_again(keystore: Keystore, configured: CryptoSettings, send: Send, code: str) -> bytes | None:
    """The code key from the parameters recorded with the send; None when they are not
    acceptable (see ``kdf_params``)."""
    params = kdf_params(send.code_kdf, configured)
    if params is None or send.code_salt is None or send.code_pepper is None:
        return None
    return code_key(keystore, params, send.id, code, bytes(send.code_salt), send.code_pepper)[1]


def seal_with_code(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_with_code(key: bytes, blob: bytes, context: bytes) -> bytes:
    if len(blob) < _NONCE + 16:
        raise DecryptionFailed()
    try:
        return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], context)
    except InvalidTag:
        raise DecryptionFailed() from None
