"""Typed errors of the HSM layer.

Callers never see python-pkcs11 exceptions: every library error is translated at
this boundary into one of these classes (``raise ... from exc``).
"""

from __future__ import annotations


class HsmError(Exception):
    """Base class for every error raised by the HSM layer."""


class HsmUnavailable(HsmError):
    """The token cannot be used right now; the web layer answers 503."""


class ModuleLoadError(HsmUnavailable):
    """The PKCS#11 module could not be loaded from the configured path."""


class TokenMissing(HsmUnavailable):
    """No token with the configured label is present."""


class WrongTokenPin(HsmUnavailable):
    """The token refused the configured PIN (or the PIN is locked)."""


class SessionExhausted(HsmUnavailable):
    """Every pooled session stayed busy past the acquire timeout."""


class DeviceError(HsmUnavailable):
    """The module or device failed (removed token, device error, ...)."""


class KeyNotFound(HsmError):
    """A key with the requested label does not exist on the token."""


class RootKeyMissing(KeyNotFound, HsmUnavailable):
    """A root key is not on the token: wrong token, token not initialized, or gone."""


class RootKeyRejected(HsmUnavailable):
    """A key labelled as a root does not have a root's attributes (made outside
    `coffre init`, e.g. planted by someone holding the token PIN): never used."""


class OperationFailed(HsmError):
    """The token refused an operation for a reason other than device failure."""


class DecryptionFailed(HsmError):
    """One opaque error for every failed unwrap, decrypt or integrity check.

    It deliberately says nothing about why (bad tag, wrong key, bad header).
    """

    def __init__(self) -> None:
        super().__init__("decryption failed")


class MalformedEnvelope(DecryptionFailed):
    """The blob's header could not be parsed (still opaque to callers)."""
