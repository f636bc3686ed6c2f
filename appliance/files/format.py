"""The file format: a STREAM of AES-256-GCM chunks (as in age and Tink's
AES-GCM-HKDF streaming AEAD). Byte layout in docs/security.md, "File format".

Header (authenticated: it is the HKDF ``info``, so any change changes the key)::

    magic       4 bytes  b"CFIL"
    version     1 byte   1
    algorithm   1 byte   1 = AES-256-GCM, payload key HKDF-SHA256, STREAM nonces
    chunk_size  4 bytes  big-endian, plaintext bytes per chunk (all but the last)
    key_len     2 bytes  big-endian
    key_ref     key_len  ASCII "vault=<id>|file=<id>|version=<n>"
    salt        32 bytes random

    payload key = HKDF-SHA256(ikm = data key, salt = salt,
                              info = b"coffre/file-stream/v1" || header)

Chunk ``i`` (0-based) = AES-256-GCM(payload key, nonce_i, plaintext_i, aad = b"")
with nonce_i = i as 11 bytes big-endian || 0x01 for the last chunk, else 0x00.
Every chunk but the last carries exactly ``chunk_size`` plaintext bytes; the last
carries 0..chunk_size (an empty file is one empty last chunk). Stored: header then
each chunk's ciphertext‖tag, in order.

Truncation (the last chunk is missing: the new last one was sealed with flag 0),
reordering and duplication (counter in the nonce), trailing data (nothing may follow
a flag-1 chunk), a flipped byte (GCM tag), a header edit (different payload key)
and a blob or chunk from another file (different data key) all fail the same way:
``StreamError``, with no reason given.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CFIL"
VERSION = 1
ALG_AES256GCM_HKDF_STREAM = 1
SALT_BYTES = 32
TAG_BYTES = 16
INFO = b"coffre/file-stream/v1"
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
_COUNTER_MAX = 2**88 - 1
_FIXED = struct.Struct(">4sBBIH")


class StreamError(Exception):
    """The stored file does not open. Deliberately says nothing about why."""

    def __init__(self) -> None:
        super().__init__("the file does not open (damaged or tampered with)")


@dataclass(frozen=True)
class Header:
    chunk_size: int
    key_ref: str
    salt: bytes

    def encode(self) -> bytes:
        ref = self.key_ref.encode("ascii")
        return _FIXED.pack(MAGIC, VERSION, ALG_AES256GCM_HKDF_STREAM, self.chunk_size, len(ref)) + ref + self.salt

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        try:
            magic, version, alg, chunk_size, key_len = _FIXED.unpack_from(raw, 0)
            ref = raw[_FIXED.size : _FIXED.size + key_len].decode("ascii")
            salt = raw[_FIXED.size + key_len : _FIXED.size + key_len + SALT_BYTES]
        except (struct.error, UnicodeDecodeError):
            raise StreamError() from None
        if (
            magic != MAGIC
            or version != VERSION
            or alg != ALG_AES256GCM_HKDF_STREAM
            or not MIN_CHUNK <= chunk_size <= MAX_CHUNK
            or len(ref) != key_len
            or len(salt) != SALT_BYTES
            or len(raw) != header_length(key_len)
        ):
            raise StreamError()
        return cls(chunk_size, ref, salt)

    @property
    def length(self) -> int:
        return header_length(len(self.key_ref))


def header_length(key_len: int) -> int:
    return _FIXED.size + key_len + SALT_BYTES


def key_ref(vault_id: str, file_id: str, version: int) -> str:
    return f"vault={vault_id}|file={file_id}|version={version}"


def nonce(counter: int, last: bool) -> bytes:
    if not 0 <= counter <= _COUNTER_MAX:
        raise StreamError()
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def payload_key(data_key: bytes, header: Header) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=header.salt, info=INFO + header.encode()).derive(data_key)


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a file of ``size`` bytes (at least one: the last, maybe empty)."""
    return max(1, -(-size // chunk_size))


def sealed_length(size: int, chunk_size: int) -> int:
    return size + TAG_BYTES * chunk_count(size, chunk_size)


class ChunkCipher(Protocol):
    """Seals and opens one chunk under the payload key: in the process
    (``cryptography``) or in the token (``[files] bulk_crypto``)."""

    def seal(self, nonce: bytes, plaintext: bytes) -> bytes: ...

    def open(self, nonce: bytes, sealed: bytes) -> bytes: ...


class ProcessCipher:
    """AES-GCM with ``cryptography``: the payload key lives in this object for
    the one upload or download, then is dropped."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, None)

    def open(self, nonce: bytes, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, sealed, None)
        except InvalidTag:
            raise StreamError() from None


CipherFactory = Callable[[bytes], ChunkCipher]


def new_header(chunk_size: int, ref: str) -> Header:
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ValueError("chunk size out of range")
    return Header(chunk_size, ref, os.urandom(SALT_BYTES))


class Sealer:
    """Feed plaintext in any pieces; get sealed chunks out. ``finish`` seals the
    last chunk (flag 1); nothing may be fed after it."""

    def __init__(self, cipher: ChunkCipher, header: Header) -> None:
        self.cipher = cipher
        self.header = header
        self.counter = 0
        self._pending = bytearray()
        self.finished = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.finished:
            raise StreamError()
        self._pending += data
        size = self.header.chunk_size
        # Keep at least one byte back: the chunk that ends the stream must get the flag.
        while len(self._pending) > size:
            piece = bytes(self._pending[:size])
            del self._pending[:size]
            yield self.cipher.seal(nonce(self.counter, False), piece)
            self.counter += 1

    def finish(self) -> bytes:
        if self.finished:
            raise StreamError()
        self.finished = True
        sealed = self.cipher.seal(nonce(self.counter, True), bytes(self._pending))
        self._pending = bytearray()
        self.counter += 1
        return sealed


def open_chunk(cipher: ChunkCipher, index: int, last: bool, sealed: bytes, chunk_size: int) -> bytes:
    """Open chunk ``index``; checks its length against its place in the stream."""
    if len(sealed) < TAG_BYTES or len(sealed) > chunk_size + TAG_BYTES:
        raise StreamError()
    if not last and len(sealed) != chunk_size + TAG_BYTES:
        raise StreamError()
    return cipher.open(nonce(index, last), sealed)
