"""The caller's own sessions: list them, revoke one (only one of theirs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from appliance.errors import NotFound
from appliance.models import Session as SessionRow
from appliance.sessions import Principal
from appliance.tokens import is_id

if TYPE_CHECKING:
    from appliance.core import Appliance


@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    client_addr: str | None
    current: bool


def list_sessions(app: Appliance, principal: Principal) -> list[SessionInfo]:
    """The caller's open sessions, newest first (a read-only query)."""
    now = app.clock()
    idle = app.settings.security.session_idle_seconds
    with app.db.read() as db:
        rows = db.execute(
            select(
                SessionRow.id,
                SessionRow.created_at,
                SessionRow.last_seen_at,
                SessionRow.expires_at,
                SessionRow.client_addr,
            )
            .where(SessionRow.user_id == principal.user_id)
            .order_by(SessionRow.created_at.desc(), SessionRow.id)
        ).all()
    return [
        SessionInfo(r.id, r.created_at, r.last_seen_at, r.expires_at, r.client_addr, r.id == principal.session_id)
        for r in rows
        if r.expires_at > now and r.last_seen_at + idle > now
    ]


def revoke_session(app: Appliance, principal: Principal, session_id: str) -> None:
    """Revoke one of the caller's sessions; another user's session is "not found"."""
    if not is_id(session_id):
        raise NotFound("no such session")
    with app.keystore.work() as work, app.db.write() as db:
        owner = db.execute(select(SessionRow.user_id).where(SessionRow.id == session_id)).scalar_one_or_none()
        if owner is None or owner != principal.user_id:
            raise NotFound("no such session")
        app.sessions.revoke(db, work, session_id)
        app.audit.by(principal, db, work, "session.revoked", target=principal.user_id, session=session_id)
    if session_id == principal.session_id:
        app.sessions.forget_cached(principal)
