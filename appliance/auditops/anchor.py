"""The hourly ``audit.anchor`` entry: the head (seq and MAC) recorded in the log
itself, so an exported or forwarded copy carries periodic checkpoints.

At most one per interval across nodes: the ``anchor`` cursor row is locked in the
same write transaction that appends the entry (a second node waits on the lock,
then sees the fresh time and does nothing). An idle log gets no new anchor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from appliance.auditops import cursors
from appliance.models import AuditCursor, AuditHead

if TYPE_CHECKING:
    from appliance.core import Appliance

EVENT = "audit.anchor"


def maybe_anchor(app: Appliance, interval: float, started: float, clock: Callable[[], float] = time.time) -> int | None:
    """Append an anchor when the last one (or, before the first, ``started``: when
    this process's task began) is older than ``interval`` seconds and the log moved
    since; returns the anchor's seq, or None when none was due. ``clock`` is wall
    time (nodes compare it), not the appliance's clock."""

    def due(row: AuditCursor | None, head: int, now: float) -> bool:
        last = row.updated_at if row is not None else started
        return now - last >= interval and (row is None or row.seq != head)

    with app.db.read() as db:
        row = cursors.get(db, cursors.ANCHOR)
        head = db.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one_or_none()
        if head is None or not due(row, head, clock()):
            return None
    try:
        with app.keystore.work() as work, app.db.write() as db:
            row = cursors.locked(db, cursors.ANCHOR)
            now = clock()
            head_row = db.execute(select(AuditHead.seq, AuditHead.mac).where(AuditHead.id == 1)).one()
            if not due(row, head_row.seq, now):
                return None
            app.audit.append(db, work, EVENT, head_seq=head_row.seq, head_mac=head_row.mac)
            seq = int(head_row.seq) + 1
            if row is None:
                db.add(AuditCursor(name=cursors.ANCHOR, seq=seq, updated_at=now, last_error=None))
            else:
                row.seq, row.updated_at = seq, now
            return seq
    except IntegrityError:  # another node inserted the first anchor row at the same moment (and anchored)
        return None
