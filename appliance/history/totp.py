"""TOTP (RFC 6238) for items that hold a ``totp`` field: an otpauth:// URI or a
base32 secret. Codes are computed server-side with pyotp."""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass

import pyotp

from appliance.errors import ValidationFailed

ALGORITHMS = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


@dataclass(frozen=True)
class TotpCode:
    code: str
    seconds_left: int


def parse(value: str) -> pyotp.TOTP:
    """A TOTP generator for ``value``; ValidationFailed if it is neither a TOTP
    otpauth:// URI nor a base32 secret."""
    text = value.strip()
    try:
        if text.lower().startswith("otpauth://"):
            otp = pyotp.parse_uri(text)
            if not isinstance(otp, pyotp.TOTP):
                raise ValidationFailed("totp must be a TOTP otpauth:// URI (not HOTP)")
        else:
            secret = text.replace(" ", "").upper()
            otp = pyotp.TOTP(secret)
        otp.byte_secret()  # a secret that is not base32 fails here
    except ValidationFailed:
        raise
    except (ValueError, TypeError, binascii.Error):
        raise ValidationFailed("totp must be an otpauth://totp/ URI or a base32 secret") from None
    if not 6 <= otp.digits <= 10 or not 1 <= otp.interval <= 3600 or len(otp.byte_secret()) < 10:
        raise ValidationFailed("totp: 6 to 10 digits, a period of 1 to 3600 s and a secret of at least 80 bits")
    return otp


def check(value: str) -> str:
    """The value to store (URIs as given, base32 secrets without spaces, upper case)."""
    parse(value)
    text = value.strip()
    return text if text.lower().startswith("otpauth://") else text.replace(" ", "").upper()


def code_at(value: str, now: float) -> TotpCode:
    otp = parse(value)
    interval = otp.interval
    left = interval - math.floor(now) % interval
    return TotpCode(otp.at(math.floor(now)), left)
