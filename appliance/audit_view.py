"""The audit log as the admin console shows it: pages, filters, verification."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from appliance.accounts import Accounts
from appliance.audit import VerifyResult, verify
from appliance.errors import ValidationFailed
from appliance.models import AuditEntry, AuditHead, User
from appliance.sessions import Principal

if TYPE_CHECKING:
    from appliance.core import Appliance

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilters:
    event: str = ""
    actor: str = ""  # an e-mail address (or part of one) or a user id
    since: str = ""  # YYYY-MM-DD (UTC), inclusive
    until: str = ""  # YYYY-MM-DD (UTC), inclusive


@dataclass(frozen=True)
class AuditRow:
    seq: int
    ts: float
    event: str
    actor: str | None
    actor_email: str | None
    target: str | None
    client_addr: str | None
    details: str
    mac: str


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    total: int
    page: int
    pages: int
    events: list[str]
    head_seq: int
    head_mac: str


def _day(value: str, name: str) -> float:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValidationFailed(f"{name} must be a date (YYYY-MM-DD)") from None


def _conditions(filters: AuditFilters) -> list[Any]:
    conds: list[Any] = []
    if filters.event:
        conds.append(AuditEntry.event == filters.event)
    if filters.actor:
        needle = filters.actor.strip().lower()[:320]
        emails = select(User.id).where(User.email.contains(needle, autoescape=True))
        conds.append(or_(AuditEntry.actor == needle, AuditEntry.actor.in_(emails)))
    if filters.since:
        conds.append(AuditEntry.ts >= _day(filters.since, "since"))
    if filters.until:
        conds.append(AuditEntry.ts < _day(filters.until, "until") + 86400)
    return conds


def _deleted_emails(db: Any, user_ids: set[str]) -> dict[str, str]:
    """Deleted users' addresses, from their ``user.deleted`` entries (offboarding)."""
    found: dict[str, str] = {}
    for target, details in db.execute(
        select(AuditEntry.target, AuditEntry.details).where(
            AuditEntry.event == "user.deleted", AuditEntry.target.in_(user_ids)
        )
    ):
        try:
            email = json.loads(details or "{}").get("email")
        except ValueError:
            continue
        if target and isinstance(email, str):
            found[target] = email
    return found


def page(app: Appliance, principal: Principal, filters: AuditFilters, number: int = 1) -> AuditPage:
    """One page of entries, newest first (administrators only)."""
    Accounts.require_admin(principal)
    conds = _conditions(filters)
    with app.db.read() as db:
        total = int(db.execute(select(func.count()).select_from(AuditEntry).where(*conds)).scalar_one())
        pages = max(1, -(-total // PAGE_SIZE))
        number = min(max(1, number), pages)
        rows = db.execute(
            select(AuditEntry, User.email)
            .outerjoin(User, User.id == AuditEntry.actor)
            .where(*conds)
            .order_by(AuditEntry.seq.desc())
            .limit(PAGE_SIZE)
            .offset((number - 1) * PAGE_SIZE)
        ).all()
        events = [e for (e,) in db.execute(select(AuditEntry.event).distinct().order_by(AuditEntry.event))]
        head = db.execute(select(AuditHead.seq, AuditHead.mac).where(AuditHead.id == 1)).one_or_none()
        gone = {e.actor for e, email in rows if email is None and e.actor}
        deleted = _deleted_emails(db, gone) if gone else {}
    out = [
        AuditRow(
            e.seq,
            e.ts,
            e.event,
            e.actor,
            email or deleted.get(e.actor or ""),
            e.target,
            e.client_addr,
            e.details,
            e.mac,
        )
        for e, email in rows
    ]
    return AuditPage(out, total, number, pages, events, head.seq if head else 0, head.mac if head else "")


def verify_chain(app: Appliance, principal: Principal, recorded_head: str | None = None) -> VerifyResult:
    """What `coffre audit verify` reports (administrators only)."""
    Accounts.require_admin(principal)
    with app.keystore.work() as work, app.db.read() as db:
        return verify(db, work, recorded_head or None, app.integrity.deployment())
