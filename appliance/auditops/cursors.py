"""Rows of ``audit_cursors``: the forwarding cursor, its lease and the anchor clock.

- ``forward``: ``seq`` is the last entry the receiver was sent, ``last_error`` the
  last failure (None once a batch goes through), ``updated_at`` when it moved.
- ``forward.lease``: one forwarder per deployment across nodes and workers.
  ``seq`` holds the holder's random id, ``updated_at`` when the lease expires.
  It is taken or renewed in a short write transaction (never held across network
  I/O), so it costs no connection and blocks nothing while a SIEM is slow.
- ``anchor``: ``seq`` is the last ``audit.anchor`` entry, ``updated_at`` its time.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.models import AuditCursor

FORWARD = "forward"
LEASE = "forward.lease"
ANCHOR = "anchor"
LEASE_SECONDS = 20.0


def new_holder_id() -> int:
    return secrets.randbelow(2**31 - 2) + 1  # fits PostgreSQL's INTEGER


def locked(db: Session, name: str) -> AuditCursor | None:
    """The row, locked for this transaction (FOR UPDATE; SQLite's writer lock does it there)."""
    return db.execute(select(AuditCursor).where(AuditCursor.name == name).with_for_update()).scalar_one_or_none()


def get(db: Session, name: str) -> AuditCursor | None:
    return db.get(AuditCursor, name)


def take_lease(db: Session, holder: int, now: float, seconds: float = LEASE_SECONDS) -> bool:
    """Take or renew the lease inside the caller's write transaction; False when
    another holder's lease has not expired."""
    row = locked(db, LEASE)
    if row is None:
        db.add(AuditCursor(name=LEASE, seq=holder, updated_at=now + seconds, last_error=None))
        return True
    if row.seq != holder and row.updated_at > now:
        return False
    row.seq = holder
    row.updated_at = now + seconds
    return True


def holds_lease(db: Session, holder: int, now: float) -> bool:
    row = locked(db, LEASE)
    return row is not None and row.seq == holder and row.updated_at > now


def release_lease(db: Session, holder: int, now: float) -> None:
    row = locked(db, LEASE)
    if row is not None and row.seq == holder:
        row.updated_at = now
