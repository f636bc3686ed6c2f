"""Bulk AES-256-GCM in the token under a caller-supplied key (``[files]
bulk_crypto = "hsm"``): the key is imported as a sensitive, non-extractable
session object that only encrypts and decrypts, and dies with the unit of work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from hsm.keystore import Work

TAG_BITS = 128


def import_key(work: Work, value: bytes) -> Any:
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
        Attribute.VALUE: value,
    }
    return work._temp(work.session.create_object(template))


def seal(key: Any, nonce: bytes, plaintext: bytes) -> bytes:
    return bytes(key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"", TAG_BITS)))


def open_(key: Any, nonce: bytes, sealed: bytes) -> bytes:
    from hsm.keystore import OPEN_FAILURES

    try:
        return bytes(key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, b"", TAG_BITS)))
    except OPEN_FAILURES as exc:
        raise DecryptionFailed() from exc
