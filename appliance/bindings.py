"""Bindings: HMACs under the HSM ``bind`` root that tie a public key to its user
and a wrapped vault key to its vault, member and key version.

Whoever can write the database but not use the token could otherwise replace a
member's public key with their own (the next rotation or invitation would wrap
the vault key for them) or plant a wrapped key of their choosing. Every wrap
checks the public key's binding first, every unwrap the wrapped key's.
"""

from __future__ import annotations

import hmac

from hsm.errors import KeyNotFound
from hsm.keystore import Work
from hsm.labels import RootKind


def _public_key_input(user_id: str, public_der: bytes) -> bytes:
    return b"coffre/public-key/v1|" + user_id.encode("ascii") + b"|" + public_der


def _member_key_input(vault_id: str, user_id: str, key_version: int, wrapped: bytes) -> bytes:
    head = f"coffre/member-key/v1|vault={vault_id}|user={user_id}|version={key_version}|"
    return head.encode("ascii") + wrapped


def _folder_key_input(vault_id: str, folder_id: str, user_id: str, key_version: int, wrapped: bytes) -> bytes:
    head = f"coffre/folder-key/v1|vault={vault_id}|folder={folder_id}|user={user_id}|version={key_version}|"
    return head.encode("ascii") + wrapped


def _seal(work: Work, data: bytes) -> str:
    label, mac = work.mac(RootKind.BIND, data)
    return f"{label}:{mac.hex()}"


def _check(work: Work, data: bytes, stored: str | None) -> bool:
    if not stored or ":" not in stored:
        return False
    label, _, expected = stored.partition(":")
    try:
        _, mac = work.mac(RootKind.BIND, data, label)
    except KeyNotFound:
        return False
    return hmac.compare_digest(mac.hex(), expected)


def bind_public_key(work: Work, user_id: str, public_der: bytes) -> str:
    return _seal(work, _public_key_input(user_id, public_der))


def public_key_is_bound(work: Work, user_id: str, public_der: bytes, stored: str | None) -> bool:
    return _check(work, _public_key_input(user_id, public_der), stored)


def bind_member_key(work: Work, vault_id: str, user_id: str, key_version: int, wrapped: bytes) -> str:
    return _seal(work, _member_key_input(vault_id, user_id, key_version, wrapped))


def member_key_is_bound(
    work: Work, vault_id: str, user_id: str, key_version: int, wrapped: bytes, stored: str | None
) -> bool:
    return _check(work, _member_key_input(vault_id, user_id, key_version, wrapped), stored)


def _send_key_input(send_id: str, user_id: str, wrapped: bytes) -> bytes:
    return f"coffre/send-key/v1|send={send_id}|user={user_id}|".encode("ascii") + wrapped


def bind_send_key(work: Work, send_id: str, user_id: str, wrapped: bytes) -> str:
    """A send key wrapped to ``user_id``'s public key, for send ``send_id`` only."""
    return _seal(work, _send_key_input(send_id, user_id, wrapped))


def send_key_is_bound(work: Work, send_id: str, user_id: str, wrapped: bytes, stored: str | None) -> bool:
    return _check(work, _send_key_input(send_id, user_id, wrapped), stored)


def bind_folder_key(work: Work, vault_id: str, folder_id: str, user_id: str, key_version: int, wrapped: bytes) -> str:
    return _seal(work, _folder_key_input(vault_id, folder_id, user_id, key_version, wrapped))


def folder_key_is_bound(
    work: Work, vault_id: str, folder_id: str, user_id: str, key_version: int, wrapped: bytes, stored: str | None
) -> bool:
    return _check(work, _folder_key_input(vault_id, folder_id, user_id, key_version, wrapped), stored)
