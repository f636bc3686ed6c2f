"""Bulk AES-256-GCM in the token under a caller-supplied key (``[files]
bulk_crypto = "hsm"``): the key is imported as a sensitive, non-extractable
session object that only encrypts and decrypts, and dies with the unit of work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pkcs11 import Mechanism
from pkcs11.mechanisms import GCMParams

from hsm import templates
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from hsm.keystore import Work

NONCE_BYTES = 12


def import_key(work: Work, value: bytes) -> Any:
    return work._temp(work.session.create_object(templates.imported_bulk_key(value)))


def _params(nonce: bytes) -> GCMParams:
    from hsm.keystore import GCM_TAG_BITS

    if len(nonce) != NONCE_BYTES:
        raise ValueError("GCM nonces are 96-bit here")
    return GCMParams(nonce, b"", GCM_TAG_BITS)


def seal(key: Any, nonce: bytes, plaintext: bytes) -> bytes:
    return bytes(key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=_params(nonce)))


def open_(key: Any, nonce: bytes, sealed: bytes) -> bytes:
    from hsm.keystore import OPEN_FAILURES

    try:
        return bytes(key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=_params(nonce)))
    except OPEN_FAILURES as exc:
        raise DecryptionFailed() from exc
