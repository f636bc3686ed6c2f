"""The data key: 32 bytes from the token's random generator, wrapped (AES-256-GCM
in the token) under the vault key with associated data naming vault, file,
version and vault-key version; and the chunk cipher the setting asks for."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from appliance.files.format import ChunkCipher, ProcessCipher, StreamError
from hsm import bulk
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from hsm.keystore import Keystore, Work

DATA_KEY_BYTES = 32


def _context(
    what: str, vault_id: str, file_id: str, version: int, key_version: int, key_folder_id: str | None
) -> bytes:
    if key_folder_id is None:  # under the vault key
        text = f"coffre/file-{what}/v1|vault={vault_id}|file={file_id}|version={version}|key={key_version}"
    else:  # under a folder's key
        text = (
            f"coffre/file-{what}/v2|vault={vault_id}|keyfolder={key_folder_id}|file={file_id}"
            f"|version={version}|key={key_version}"
        )
    return text.encode("ascii")


def key_context(vault_id: str, file_id: str, version: int, key_version: int, key_folder_id: str | None = None) -> bytes:
    return _context("key", vault_id, file_id, version, key_version, key_folder_id)


def meta_context(
    vault_id: str, file_id: str, version: int, key_version: int, key_folder_id: str | None = None
) -> bytes:
    return _context("meta", vault_id, file_id, version, key_version, key_folder_id)


def new_data_key(work: Work) -> bytes:
    return bytes(work.session.generate_random(DATA_KEY_BYTES * 8))


def wrap(work: Work, vault_key: Any, data_key: bytes, context: bytes) -> bytes:
    return work.encrypt_field(vault_key, data_key, context)


def unwrap(work: Work, vault_key: Any, wrapped: bytes, context: bytes) -> bytes:
    """Raises DecryptionFailed when the wrapped key is not this file version's."""
    key = work.decrypt_field(vault_key, wrapped, context)
    if len(key) != DATA_KEY_BYTES:
        raise DecryptionFailed()
    return key


def seal_meta(work: Work, vault_key: Any, meta: dict[str, Any], context: bytes) -> bytes:
    return work.encrypt_field(vault_key, json.dumps(meta, separators=(",", ":")).encode("utf-8"), context)


def open_meta(work: Work, vault_key: Any, blob: bytes, context: bytes) -> dict[str, Any]:
    value = json.loads(work.decrypt_field(vault_key, blob, context))
    if not isinstance(value, dict):
        raise DecryptionFailed()
    return value


class HsmCipher:
    """Chunks sealed in the token: the payload key is imported as a sensitive,
    non-extractable session object held for the one transfer (a pooled session
    stays lent until ``close``)."""

    def __init__(self, keystore: Keystore, key: bytes) -> None:
        self._stack = ExitStack()
        work = self._stack.enter_context(keystore.work())
        self._key = bulk.import_key(work, key)

    def seal(self, nonce: bytes, plaintext: bytes) -> bytes:
        return bulk.seal(self._key, nonce, plaintext)

    def open(self, nonce: bytes, sealed: bytes) -> bytes:
        try:
            return bulk.open_(self._key, nonce, sealed)
        except DecryptionFailed:
            raise StreamError() from None

    def close(self) -> None:
        self._stack.close()


def chunk_cipher(mode: str, keystore: Keystore, payload_key: bytes) -> ChunkCipher:
    if mode == "hsm":
        return HsmCipher(keystore, payload_key)
    return ProcessCipher(payload_key)


def close_cipher(cipher: ChunkCipher) -> None:
    close = getattr(cipher, "close", None)
    if close is not None:
        close()
