"""Pinned key templates: every attribute that matters is set, nothing is left to
python-pkcs11's defaults (which give new AES keys every capability)."""

from __future__ import annotations

from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.constants import DEFAULT

_NO_CAPABILITIES: dict[Attribute, Any] = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}


def root_aes_kek(label: str) -> dict[Attribute, Any]:
    """A root KEK: token object, never extractable, seals blobs with AES-GCM."""
    return {
        **_NO_CAPABILITIES,
        Attribute.LABEL: label,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.VALUE_LEN: 32,
    }


def root_aes_ukw(label: str) -> dict[Attribute, Any]:
    """The user-key wrapping root on a token without ``CKA_UNWRAP_TEMPLATE``
    (where it has it, ``hsm/templated.py`` makes the key with the template)."""
    return {
        **_NO_CAPABILITIES,
        Attribute.LABEL: label,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
        Attribute.VALUE_LEN: 32,
    }


def root_hmac(label: str) -> dict[Attribute, Any]:
    """A root HMAC-SHA256 secret (password pepper, audit chain)."""
    return {
        **_NO_CAPABILITIES,
        Attribute.LABEL: label,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False,
        Attribute.SIGN: True,
        Attribute.VERIFY: True,
        Attribute.VALUE_LEN: 32,
    }


def caller_wrapping_key(value: bytes) -> dict[Attribute, Any]:
    """An AES key derived outside the token (from a PIN or a session secret),
    imported for one operation: it can only wrap and unwrap."""
    return {
        **_NO_CAPABILITIES,
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
        Attribute.VALUE: value,
    }


def user_public_key(bits: int) -> dict[Attribute, Any]:
    return {
        Attribute.TOKEN: False,
        Attribute.PRIVATE: False,
        Attribute.ENCRYPT: True,
        Attribute.WRAP: True,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
        Attribute.MODULUS_BITS: bits,
        Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01",
    }


def user_private_key(extractable: bool) -> dict[Attribute, Any]:
    """A user's private key inside the token: sensitive, decrypt/unwrap only.

    Extractable (wrappable) only while it must be re-wrapped: at enrollment and at
    unlock. The per-request copy is not extractable.
    """
    return {
        # Attributes a private key does not have: drop python-pkcs11's defaults.
        Attribute.ENCRYPT: DEFAULT,
        Attribute.WRAP: DEFAULT,
        Attribute.VERIFY: DEFAULT,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: extractable,
        Attribute.DECRYPT: True,
        Attribute.UNWRAP: True,
        Attribute.SIGN: False,
        Attribute.DERIVE: False,
    }


def imported_public_key(modulus: bytes, exponent: bytes) -> dict[Attribute, Any]:
    """A member's public key brought into the token to wrap a vault key for them."""
    return {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: False,
        Attribute.WRAP: True,
        Attribute.ENCRYPT: False,
        Attribute.VERIFY: False,
        Attribute.MODULUS: modulus,
        Attribute.PUBLIC_EXPONENT: exponent,
    }


def data_key(extractable: bool = True) -> dict[Attribute, Any]:
    """A vault key (AES-256) inside the token: session object, sensitive.

    A new key is extractable so that it can be wrapped for its members; a copy
    unwrapped to read or write items is not. Its value is never readable in clear
    (SENSITIVE) either way.
    """
    return {
        **_NO_CAPABILITIES,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: extractable,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
    }


def imported_bulk_key(value: bytes) -> dict[Attribute, Any]:
    """A caller's AES-256 payload key imported for bulk GCM (``[files] bulk_crypto =
    "hsm"``): session object, sensitive, never extractable, encrypt/decrypt only."""
    if len(value) != 32:
        raise ValueError("bulk keys are AES-256")
    return {
        **_NO_CAPABILITIES,
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.VALUE: value,
    }
