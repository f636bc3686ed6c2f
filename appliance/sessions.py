"""Sessions opened by password + PIN, usable from any node.

At unlock the user's private key is re-wrapped (inside the token) under a key
derived from a secret that only the client holds, then sealed under the KEK; the
blob stays with the session row. Any node holding the database and the token can
serve the session when the client presents its token, and no node can without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select, update

from appliance.errors import IntegrityFailure, Unauthorized
from appliance.models import Session as SessionRow
from appliance.models import User
from appliance.tokens import SessionToken
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

# Rewrite last_seen_at at most this often (one write per minute per session).
_TOUCH_EVERY = 60.0


def session_context(session_id: str, user_id: str) -> bytes:
    """Associated data of a session's key blob: moving the row to another user
    (or the blob to another session) makes it fail to open."""
    return f"coffre/session-key/v1|session={session_id}|user={user_id}".encode("ascii")


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    is_admin: bool
    session_id: str
    token: SessionToken = field(repr=False)
    key_blob: bytes = field(repr=False)
    client_addr: str | None
    expires_at: float

    @cached_property
    def cache_prefix(self) -> bytes:
        """Computed once per request (an HKDF and a hash), used by every cache lookup."""
        return hashlib.sha256(self.token.cache_key()).digest()


class Sessions:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    def create(self, db: Any, work: Work, user: User, pin_key: bytes, client_addr: str | None) -> tuple[str, float]:
        """Open a session for ``user`` whose PIN key is ``pin_key`` (inside ``db``'s txn).

        Raises DecryptionFailed when the PIN key is wrong.
        """
        assert user.private_key_blob is not None
        now = self.app.clock()
        rules = self.app.settings.security
        token = SessionToken.new()
        blob = work.rewrap_private_key(
            user.private_key_blob,
            user_key_context(user.id),
            pin_key,
            token.wrapping_key(),
            session_context(token.session_id, user.id),
            "session",
        )
        expires = now + rules.session_max_seconds
        db.add(
            SessionRow(
                id=token.session_id,
                user_id=user.id,
                verifier=token.verifier(),
                key_blob=blob,
                kek_label=work.sealed_under(blob),
                created_at=now,
                last_seen_at=now,
                expires_at=expires,
                client_addr=client_addr,
            )
        )
        return token.encode(), expires

    def authenticate(self, raw_token: str, client_addr: str | None) -> Principal:
        token = SessionToken.parse(raw_token)
        if token is None:
            raise Unauthorized("missing or malformed session token")
        now = self.app.clock()
        rules = self.app.settings.security
        with self.app.db.read() as db:
            # Plain columns, not ORM objects: this runs on every request.
            row = db.connection().execute(_SESSION_LOOKUP, {"sid": token.session_id}).one_or_none()
        user = row
        if row is None or not token.matches(row.verifier):
            raise Unauthorized("invalid or expired session")
        if row.expires_at <= now or row.last_seen_at + rules.session_idle_seconds <= now:
            with self.app.db.write() as db:
                db.execute(delete(SessionRow).where(SessionRow.id == row.id))
            raise Unauthorized("invalid or expired session")
        if user.status != "active" or user.locked:
            raise Unauthorized("invalid or expired session")
        if now - row.last_seen_at >= _TOUCH_EVERY:
            with self.app.db.write() as db:
                db.execute(update(SessionRow).where(SessionRow.id == row.id).values(last_seen_at=now))
        return Principal(
            user_id=row.user_id,
            email=user.email,
            is_admin=user.is_admin,
            session_id=row.id,
            token=token,
            key_blob=row.key_blob,
            client_addr=client_addr,
            expires_at=min(row.expires_at, now + rules.session_idle_seconds),
        )

    def private_key(self, work: Work, principal: Principal) -> Any:
        """The caller's private key inside the token (cached there per session)."""
        cache = self.app.keystore.cache
        key = principal.cache_prefix + b"|private"
        handle = cache.get(key, work.generation)
        if handle is not None:
            return handle
        try:
            handle = work.open_private_key(
                principal.key_blob,
                session_context(principal.session_id, principal.user_id),
                principal.token.wrapping_key(),
            )
        except DecryptionFailed as exc:
            raise IntegrityFailure() from exc
        cache.put(key, work.keep(handle), work.generation)
        return handle

    def revoke(self, db: Any, session_id: str) -> None:
        db.execute(delete(SessionRow).where(SessionRow.id == session_id))

    def revoke_user(self, db: Any, user_id: str) -> int:
        result = db.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
        return int(result.rowcount or 0)

    def forget_cached(self, principal: Principal) -> None:
        self.app.keystore.cache.discard_prefix(principal.cache_prefix)

    def count_for(self, user_id: str) -> int:
        with self.app.db.read() as db:
            return len(db.execute(select(SessionRow.id).where(SessionRow.user_id == user_id)).all())


_SESSION_LOOKUP = (
    select(
        SessionRow.id,
        SessionRow.user_id,
        SessionRow.verifier,
        SessionRow.key_blob,
        SessionRow.expires_at,
        SessionRow.last_seen_at,
        User.email,
        User.is_admin,
        User.status,
        User.locked,
    )
    .join(User, User.id == SessionRow.user_id)
    .where(SessionRow.id == bindparam("sid"))
)


def user_key_context(user_id: str) -> bytes:
    return b"coffre/user-key/v1|" + user_id.encode("ascii")
