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
import secrets
from typing import Any

from appliance import peppered
from appliance.config import CryptoSettings
from appliance.items import ItemFields
from appliance.sends.models import Send
from hsm.keystore import Keystore

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
    """(pepper label, 256-bit key, KDF description) (appliance/peppered.py)."""
    return peppered.derive(
        keystore, b"send-code\x00" + send_id.encode("ascii") + b"\x00" + code.encode(), salt, crypto, label
    )


def kdf_params(kdf: Any, configured: CryptoSettings) -> CryptoSettings | None:
    """The Argon2id parameters recorded with a send, or None when malformed or above
    the ceiling (``peppered.bounded``). Checked after the row MAC."""
    return peppered.bounded(kdf, configured)


def code_key_again(keystore: Keystore, configured: CryptoSettings, send: Send, code: str) -> bytes | None:
    """The code key from the parameters recorded with the send; None when they are not
    acceptable (see ``kdf_params``)."""
    params = kdf_params(send.code_kdf, configured)
    if params is None or send.code_salt is None or send.code_pepper is None:
        return None
    return code_key(keystore, params, send.id, code, bytes(send.code_salt), send.code_pepper)[1]


seal_with_code = peppered.seal
open_with_code = peppered.open_
