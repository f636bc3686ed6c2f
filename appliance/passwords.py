"""Login passwords and PINs: peppered in the HSM, stretched with Argon2id.

- password: Argon2id over HMAC-SHA256(pepper root key, password); a database
  dump alone cannot be attacked offline without the token.
- PIN: never stored. Argon2id over HMAC-SHA256(pepper, user id || PIN) with a
  per-user salt gives the 256-bit key that wraps the user's private key (the
  inner layer). A wrong PIN simply fails to unwrap.
"""

from __future__ import annotations

import re

import argon2
from argon2.low_level import Type
from zxcvbn import zxcvbn

from appliance import peppered
from appliance.config import CryptoSettings, SecuritySettings
from appliance.errors import ValidationFailed
from hsm.errors import DecryptionFailed
from hsm.keystore import Keystore, Work
from hsm.labels import RootKind

PIN_RE = re.compile(r"^[0-9]{6}$")


class PasswordHasher:
    def __init__(self, crypto: CryptoSettings) -> None:
        self.crypto = crypto
        self._hasher = argon2.PasswordHasher(
            time_cost=crypto.argon2_time_cost,
            memory_cost=crypto.argon2_memory_kib,
            parallelism=crypto.argon2_parallelism,
            type=Type.ID,
        )
        # A real Argon2id hash to verify against when the account does not exist,
        # so that unknown e-mail and wrong password take the same time.
        self._dummy = self._hasher.hash("coffre-dummy-password-for-timing")

    @staticmethod
    def _peppered(work: Work, password: str, label: str | None) -> tuple[str, str]:
        label, mac = work.mac(RootKind.PEPPER, b"password\x00" + password.encode("utf-8"), label)
        return label, mac.hex()

    def hash(self, work: Work, password: str) -> tuple[str, str]:
        """Return (pepper label, Argon2id hash)."""
        label, peppered = self._peppered(work, password, None)
        return label, self._hasher.hash(peppered)

    def verify(self, keystore: Keystore, password: str, stored: str | None, label: str | None) -> bool:
        """Check a password. The HSM session is held for the pepper HMAC only, not
        during Argon2id (~170 ms), so logins do not exhaust the session pool."""
        known = stored is not None and label is not None
        with keystore.work() as work:
            _, peppered = self._peppered(work, password, label if known else None)
        if not known:
            try:
                self._hasher.verify(self._dummy, peppered + "x")
            except argon2.exceptions.VerificationError:
                pass
            return False
        assert stored is not None
        try:
            return bool(self._hasher.verify(stored, peppered))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def pin_key(self, work: Work, user_id: str, pin: str, salt: bytes, label: str | None) -> tuple[str, bytes, str]:
        """Return (pepper label, 256-bit PIN key, KDF description)."""
        label, key = peppered.derive_in(work, _pin_message(user_id, pin), salt, self.crypto, label)
        return label, key, peppered.describe(self.crypto)

    def pin_key_for(self, keystore: Keystore, user_id: str, pin: str, salt: bytes, label: str, kdf: str) -> bytes:
        """Re-derive a PIN key with the parameters recorded at enrollment (the HSM
        session is held for the HMAC only, not during Argon2id). The parameters sit in
        the user row, under its anchored MAC; malformed ones open nothing."""
        params = peppered.parse(kdf)
        if params is None:
            raise DecryptionFailed()
        return peppered.derive(keystore, _pin_message(user_id, pin), salt, params, label)[1]


def _pin_message(user_id: str, pin: str) -> bytes:
    return b"pin\x00" + user_id.encode("ascii") + b"\x00" + pin.encode("ascii")


def check_password_strength(password: str, email: str, rules: SecuritySettings) -> None:
    if len(password) < rules.password_min_length:
        raise ValidationFailed(f"password must be at least {rules.password_min_length} characters long")
    if len(password) > 1024:
        raise ValidationFailed("password must be at most 1024 characters long")
    # zxcvbn refuses inputs over 72 characters; the first 72 say enough about strength.
    result = zxcvbn(password[:72], user_inputs=[email[:72], email.split("@")[0][:72], "coffre"])
    if result["score"] < rules.password_min_score:
        feedback = result.get("feedback") or {}
        reasons = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
        reason = " ".join(r for r in reasons if r) or "it is too easy to guess"
        raise ValidationFailed(f"password is too weak: {reason}")


def check_pin_format(pin: str) -> None:
    if not isinstance(pin, str) or not PIN_RE.fullmatch(pin):
        raise ValidationFailed("PIN must be exactly 6 digits")
