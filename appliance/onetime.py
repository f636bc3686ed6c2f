"""One-time tokens (enrollment, password reset): issued, peeked at, claimed.

The database keeps only each token's SHA-256, and a MAC under the HSM ``bind``
root over the hash, purpose, user, expiry and, for a reset, a fingerprint of the
password it replaces: a database writer cannot mint a token, and a reset token
dies as soon as the password changes by any route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, update

from appliance.errors import ClientError
from appliance.integrity import BrokenRow, macs
from appliance.models import OneTimeToken, User
from appliance.tokens import ENROLL_PREFIX, RESET_PREFIX, new_opaque, opaque_hash
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

BAD_TOKEN = "this token is invalid, expired or already used"  # noqa: S105 - a message, not a secret
_PREFIX = {"enroll": ENROLL_PREFIX, "reset": RESET_PREFIX}


class OneTimeTokens:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    def _mac_parts(self, row: OneTimeToken, user: User) -> tuple[Any, ...]:
        fingerprint = macs.password_fingerprint(user.password_hash) if row.purpose == "reset" else ""
        return (row.token_hash, row.purpose, row.user_id, repr(float(row.expires_at)), fingerprint)

    def issue(self, db: Any, work: Work, user: User, purpose: str, created_by: str | None) -> str:
        """A new token for ``user`` (any earlier one of the same purpose dies)."""
        token = new_opaque(_PREFIX[purpose])
        db.execute(delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.purpose == purpose))
        row = OneTimeToken(
            token_hash=opaque_hash(token),
            purpose=purpose,
            user_id=user.id,
            expires_at=self.app.clock() + self.app.settings.security.enrollment_ttl_seconds,
            created_by=created_by,
        )
        row.mac = macs.make(work, "one-time-token", self.app.integrity.deployment(), *self._mac_parts(row, user))
        db.add(row)
        return token

    def revoke_resets(self, db: Any, user_id: str) -> None:
        db.execute(delete(OneTimeToken).where(OneTimeToken.user_id == user_id, OneTimeToken.purpose == "reset"))

    def peek(self, work: Work, token: Any, purpose: str) -> User:
        """The user a usable token names, without using it up."""
        now = self.app.clock()
        if not isinstance(token, str) or len(token) > 200:
            raise ClientError(BAD_TOKEN)
        with self.app.db.read() as db:
            row = db.get(OneTimeToken, opaque_hash(token))
            if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
                raise ClientError(BAD_TOKEN)
            user: User | None = db.get(User, row.user_id)
        if user is None:
            raise ClientError(BAD_TOKEN)
        if not macs.check(
            work, row.mac, "one-time-token", self.app.integrity.deployment(), *self._mac_parts(row, user)
        ):
            raise BrokenRow("one_time_token", row.user_id)
        return user

    def claim(self, db: Any, token: str, purpose: str) -> None:
        """Mark the token used, atomically (exactly one request can)."""
        now = self.app.clock()
        result = db.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.token_hash == opaque_hash(token),
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
                OneTimeToken.expires_at > now,
            )
            .values(used_at=now)
        )
        if result.rowcount != 1:
            raise ClientError(BAD_TOKEN)
