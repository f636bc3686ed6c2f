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
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select, update

from appliance.errors import IntegrityFailure, Unauthorized
from appliance.integrity import SESSION, USER, BrokenRow, Domain, macs
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
        row = SessionRow(
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
        row.seen_mac = self.seen_mac(work, row.id, now)
        self.app.integrity.seal_new(db, work, SESSION, row)
        db.add(row)
        return token.encode(), expires

    def seen_mac(self, work: Work, session_id: str, last_seen_at: float) -> str:
        """MAC of the idle clock: only the server moves it forward (a writer can
        only move it back to an older MACed value, which ends the session sooner)."""
        return macs.make(work, "session-seen", self.app.integrity.deployment(), session_id, repr(float(last_seen_at)))

    def authenticate(self, raw_token: str, client_addr: str | None) -> Principal:
        try:
            return self._authenticate(raw_token, client_addr)
        except BrokenRow as exc:
            exc.client_addr = client_addr
            self.app.integrity.record(exc)
            raise

    def _authenticate(self, raw_token: str, client_addr: str | None) -> Principal:
        token = SessionToken.parse(raw_token)
        if token is None:
            raise Unauthorized("missing or malformed session token")
        now = self.app.clock()
        rules = self.app.settings.security
        with self.app.db.read() as db:
            # Plain columns, not ORM objects: this runs on every request.
            found = db.connection().execute(_SESSION_LOOKUP, {"sid": token.session_id}).one_or_none()
        if found is None or not token.matches(found.verifier):
            raise Unauthorized("invalid or expired session")
        row, user = _split(found)
        integrity = self.app.integrity
        with self.app.keystore.work() as work:
            checked = integrity.require(None, work, SESSION, row, actor=row.user_id)
            if checked is None:
                raise Unauthorized("invalid or expired session")  # revoked meanwhile
            row = checked
            if integrity.require(None, work, USER, user, actor=row.user_id) is None:
                raise Unauthorized("invalid or expired session")
            if not macs.check(
                work, row.seen_mac, "session-seen", integrity.deployment(), row.id, repr(float(row.last_seen_at))
            ):
                raise BrokenRow("session_last_seen", row.id, row.user_id, client_addr)
            if row.expires_at <= now or row.last_seen_at + rules.session_idle_seconds <= now:
                # An expired row opens nothing even if restored: no anchor to move.
                with self.app.db.write() as db:
                    db.execute(delete(SessionRow).where(SessionRow.id == row.id))
                raise Unauthorized("invalid or expired session")
            if user.status != "active" or user.locked:
                raise Unauthorized("invalid or expired session")
            if now - row.last_seen_at >= _TOUCH_EVERY:
                seen = self.seen_mac(work, row.id, now)
                with self.app.db.write() as db:
                    db.execute(
                        update(SessionRow).where(SessionRow.id == row.id).values(last_seen_at=now, seen_mac=seen)
                    )
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

    def revoke(self, db: Any, work: Work, session_id: str) -> bool:
        """End one session on every node. Its bucket's anchor moves, so the row
        cannot be brought back from an older copy of the database."""
        user_id = db.execute(select(SessionRow.user_id).where(SessionRow.id == session_id)).scalar_one_or_none()
        if user_id is None:
            return False
        with self.app.integrity.changing(db, work, Domain.SESSIONS, user_id):
            db.execute(delete(SessionRow).where(SessionRow.id == session_id))
        return True

    def revoke_user(self, db: Any, work: Work, user_id: str) -> int:
        """End every session of a user (lock, password change or reset, disable)."""
        with self.app.integrity.changing(db, work, Domain.SESSIONS, user_id):
            result = db.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
        return int(result.rowcount or 0)

    def forget_cached(self, principal: Principal) -> None:
        self.app.keystore.cache.discard_prefix(principal.cache_prefix)

    def count_for(self, user_id: str) -> int:
        with self.app.db.read() as db:
            return len(db.execute(select(SessionRow.id).where(SessionRow.user_id == user_id)).all())


_SESSION_COLUMNS = [c.name for c in SessionRow.__table__.columns]
_USER_COLUMNS = [c.name for c in User.__table__.columns if c.name != "public_key"]
_SESSION_LOOKUP = (
    select(
        *(SessionRow.__table__.c[name] for name in _SESSION_COLUMNS),
        *(User.__table__.c[name].label("u_" + name) for name in _USER_COLUMNS),
    )
    .join(User, User.id == SessionRow.user_id)
    .where(SessionRow.id == bindparam("sid"))
)


def _split(found: Any) -> tuple[Any, Any]:
    """One joined row into a session view and a user view (attribute access, as
    the row specs read them)."""
    values = found._mapping
    session = SimpleNamespace(**{name: values[name] for name in _SESSION_COLUMNS})
    user = SimpleNamespace(**{name: values["u_" + name] for name in _USER_COLUMNS})
    return session, user


def user_key_context(user_id: str) -> bytes:
    return b"coffre/user-key/v1|" + user_id.encode("ascii")
