"""Forward every audit entry to a syslog receiver, at least once, from a cursor.

The log itself is the buffer: the forwarder reads entries after its cursor,
sends them as RFC 5424 messages, and moves the cursor only once they are sent
(and only while it still holds the lease). A receiver outage leaves the cursor
where it is; the next round sends from there. A crash between sending and moving
the cursor sends a batch twice (the SIEM de-duplicates on ``seq``), never loses one.
Requests never wait for any of it: appends only write the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from appliance.auditops import cursors
from appliance.auditops.destination import Destination, Sender, SendFailed, parse_destination
from appliance.auditops.export import entries_after, record, to_rfc5424
from appliance.db import Database
from appliance.models import AuditCursor, AuditEntry, AuditHead

log = logging.getLogger("coffre.audit.forward")
ERROR_LENGTH = 250


@dataclass(frozen=True)
class ForwardState:
    destination: str | None
    cursor: int
    head: int
    lag: int
    oldest_unsent_age: float | None
    last_error: str | None
    updated_at: float | None


class Forwarder:
    def __init__(
        self,
        database: Database,
        destination: Destination | str,
        clock: Callable[[], float],
        ca_file: str | None = None,
        batch: int = 200,
        sender: Sender | None = None,
    ) -> None:
        self.database = database
        self.destination = destination if isinstance(destination, Destination) else parse_destination(destination)
        self.clock = clock
        self.batch = batch
        self.sender = sender or Sender(self.destination, ca_file)
        self.holder = cursors.new_holder_id()
        self.sent = 0  # entries sent by this process (metrics)

    def lease(self) -> bool:
        """Take or renew the lease; False when another node forwards."""
        with self.database.write() as db:
            return cursors.take_lease(db, self.holder, self.clock())

    def pending(self) -> int:
        """Entries after the cursor (a read only)."""
        with self.database.read() as db:
            row = cursors.get(db, cursors.FORWARD)
            head = db.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one_or_none() or 0
        return max(int(head) - (row.seq if row is not None else 0), 0)

    def step(self) -> int:
        """Send the next batch after the cursor; the number sent (0: caught up).
        Raises SendFailed after recording the error in the cursor row."""
        with self.database.read() as db:
            row = cursors.get(db, cursors.FORWARD)
            after = row.seq if row is not None else 0
            entries = [record(e) for e in entries_after(db, after, self.batch)]
        if not entries:
            return 0
        messages = [to_rfc5424(r).encode("utf-8") for r in entries]
        try:
            self.sender.send(messages)
        except SendFailed as exc:
            self._record_error(str(exc))
            raise
        last = entries[-1]["seq"]
        with self.database.write() as db:
            if not cursors.holds_lease(db, self.holder, self.clock()):
                return 0  # another node took over: it sends from the stored cursor
            row = cursors.locked(db, cursors.FORWARD)
            now = self.clock()
            if row is None:
                db.add(AuditCursor(name=cursors.FORWARD, seq=last, updated_at=now, last_error=None))
            elif row.seq < last:
                row.seq, row.updated_at, row.last_error = last, now, None
        self.sent += len(entries)
        return len(entries)

    def catch_up(self, keep_going: Callable[[], bool]) -> int:
        """Send batches until caught up (renewing the lease between them)."""
        total = 0
        if self.pending() == 0:
            return 0  # nothing to send: no write, no lease taken
        while keep_going() and self.lease():
            sent = self.step()
            total += sent
            if sent < self.batch:
                break
        return total

    def _record_error(self, message: str) -> None:
        log.warning("audit forwarding to %s failed: %s", self.destination, message)
        try:
            with self.database.write() as db:
                row = cursors.locked(db, cursors.FORWARD)
                now = self.clock()
                if row is None:
                    db.add(AuditCursor(name=cursors.FORWARD, seq=0, updated_at=now, last_error=message[:250]))
                else:
                    row.last_error, row.updated_at = message[:ERROR_LENGTH], now
        except Exception:  # the database may be what failed; the next round retries
            log.exception("could not record the forwarding error")

    def close(self) -> None:
        self.sender.close()


def state(database: Database, destination: str | None, now: float) -> ForwardState:
    """Lag (entries not yet sent, age of the oldest) and the last error, for status and metrics."""
    with database.read() as db:
        row = cursors.get(db, cursors.FORWARD)
        head = db.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one_or_none() or 0
        cursor = row.seq if row is not None else 0
        oldest: Any = None
        if destination is not None and head > cursor:
            oldest = db.execute(select(func.min(AuditEntry.ts)).where(AuditEntry.seq > cursor)).scalar_one_or_none()
    return ForwardState(
        destination=destination,
        cursor=cursor,
        head=head,
        lag=max(head - cursor, 0) if destination is not None else 0,
        oldest_unsent_age=(now - oldest) if oldest is not None else None,
        last_error=row.last_error if row is not None else None,
        updated_at=row.updated_at if row is not None else None,
    )
