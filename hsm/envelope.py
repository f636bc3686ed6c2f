"""A versioned, self-describing header for every blob the HSM layer produces.

Layout (all integers big-endian)::

    magic   2 bytes  b"CF"
    format  1 byte   1
    alg     1 byte   Algorithm
    klen    1 byte   length of the key reference
    key     klen     which key opened it: a root label ("coffre-kek-v2") or a
                     description of a caller-held key ("pin", "session", "member")
    plen    1 byte   length of the parameters
    params  plen     algorithm parameters (GCM nonce; OAEP hash ids)
    body    rest     ciphertext (GCM: ciphertext || 16-byte tag)

The header is part of the GCM associated data, so it cannot be edited without the
tag failing. Readers dispatch on ``alg``; tokens and choices can change without a
flag day because old blobs say what they are.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hsm.errors import MalformedEnvelope

MAGIC = b"CF"
FORMAT = 1


class Algorithm(enum.IntEnum):
    AES_256_GCM = 1
    AES_KEY_WRAP_PAD = 2  # RFC 5649 (CKM_AES_KEY_WRAP_PAD / KWP)
    RSA_OAEP_SHA1 = 3  # OAEP, SHA-1, MGF1-SHA-1 (SoftHSM 2.6 offers only this)
    RSA_OAEP_SHA256 = 4  # OAEP, SHA-256, MGF1-SHA-256


@dataclass(frozen=True)
class Envelope:
    algorithm: Algorithm
    key_ref: str
    params: bytes
    body: bytes

    def header(self) -> bytes:
        key = self.key_ref.encode("ascii")
        if len(key) > 255 or len(self.params) > 255:
            raise ValueError("key reference or parameters too long")
        return MAGIC + bytes([FORMAT, int(self.algorithm), len(key)]) + key + bytes([len(self.params)]) + self.params

    def encode(self) -> bytes:
        return self.header() + self.body

    @classmethod
    def decode(cls, blob: bytes) -> Envelope:
        try:
            if blob[:2] != MAGIC or blob[2] != FORMAT:
                raise MalformedEnvelope()
            algorithm = Algorithm(blob[3])
            klen = blob[4]
            key_ref = blob[5 : 5 + klen].decode("ascii")
            if len(key_ref) != klen:
                raise MalformedEnvelope()
            pos = 5 + klen
            plen = blob[pos]
            params = blob[pos + 1 : pos + 1 + plen]
            if len(params) != plen:
                raise MalformedEnvelope()
            body = blob[pos + 1 + plen :]
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            raise MalformedEnvelope() from exc
        if not body:
            raise MalformedEnvelope()
        return cls(algorithm=algorithm, key_ref=key_ref, params=params, body=body)


HEADER_PREFIX = 5 + 255  # magic, format, alg, klen and the longest key reference


def key_ref_of(prefix: bytes | None) -> str | None:
    """The key reference of a blob from its first bytes (a SQL ``substr``), without
    needing the body; ``None`` when the bytes are not an envelope header."""
    if not prefix or len(prefix) < 5 or prefix[:2] != MAGIC or prefix[2] != FORMAT:
        return None
    klen = prefix[4]
    raw = prefix[5 : 5 + klen]
    if len(raw) != klen:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None
