"""Key jobs in the database: one unfinished job per kind, run by one lease holder.

- ``key_jobs.active_kind`` is the job's kind while it is unfinished and NULL once it
  is done or failed; its unique constraint makes a second unfinished job of the
  same kind impossible, on every node sharing the database.
- The lease (``lease_holder``, ``lease_expires``) names the process running the
  job. It is taken with one conditional UPDATE (free, expired, or held by a dead
  process of this host) and renewed with every batch commit, in the same
  transaction as the rows the batch moved: a process that lost its lease cannot
  commit a batch.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from appliance.errors import Conflict, NotFound
from appliance.models import KeyJob, KeyJobFailure

LEASE_SECONDS = 15.0
UNFINISHED = ("running", "paused", "waiting")
KINDS = ("kek", "pepper", "audit", "bind", "ukw", "vault")


class LeaseLost(Exception):
    """Another process took the job over (this one was presumed dead)."""


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def this_holder() -> str:
    """Who holds a lease: host, process id and the process's start time (a reused
    process id is not the same holder)."""
    pid = os.getpid()
    return f"{socket.gethostname()[:30]}:{pid}:{_start_time(pid)}"


def holder_is_dead(holder: str | None) -> bool:
    """Whether the holder is a process of this host that no longer runs. A holder
    on another host is alive until its lease expires."""
    if not holder:
        return True
    host, _, rest = holder.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname()[:30] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _start_time(pid) != started


@dataclass(frozen=True)
class JobView:
    id: str
    kind: str
    target: str
    previous: list[str]
    started_by: str
    state: str
    phase: str
    total: int
    done: int
    failed: int
    cursor: dict[str, str]
    started_at: float
    updated_at: float
    finished_at: float | None
    switched_at: float | None
    lease_holder: str | None
    lease_expires: float | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: KeyJob) -> JobView:
        return cls(
            id=row.id,
            kind=row.kind,
            target=row.target,
            previous=json.loads(row.previous or "[]"),
            started_by=row.started_by,
            state=row.state,
            phase=row.phase,
            total=row.total,
            done=row.done,
            failed=row.failed,
            cursor=json.loads(row.cursor or "{}"),
            started_at=row.started_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            switched_at=row.switched_at,
            lease_holder=row.lease_holder,
            lease_expires=row.lease_expires,
            detail=json.loads(row.detail or "{}"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "previous": self.previous,
            "started_by": self.started_by,
            "state": self.state,
            "phase": self.phase,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "lease_holder": self.lease_holder if self.state in UNFINISHED else None,
            "detail": self.detail,
        }


def _lease_free(now: float, me: str) -> Any:
    return or_(KeyJob.lease_holder.is_(None), KeyJob.lease_expires < now, KeyJob.lease_holder == me)


class JobStore:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.me = this_holder()

    def unfinished(self, kind: str) -> KeyJob | None:
        """The unfinished job of ``kind`` (``vault:ID`` for a vault's key)."""
        with self.app.db.read() as db:
            row: KeyJob | None = db.execute(select(KeyJob).where(KeyJob.active_kind == kind)).scalar_one_or_none()
            return row

    def get(self, job_id: str) -> KeyJob:
        with self.app.db.read() as db:
            row: KeyJob | None = db.get(KeyJob, job_id) if isinstance(job_id, str) and len(job_id) <= 32 else None
        if row is None:
            raise NotFound(f"no key job {job_id}")
        return row

    def recent(self, limit: int = 100) -> list[JobView]:
        with self.app.db.read() as db:
            rows = db.execute(select(KeyJob).order_by(KeyJob.started_at.desc()).limit(limit)).scalars()
            return [JobView.of(r) for r in rows]

    def failures(self, job_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        with self.app.db.read() as db:
            rows = db.execute(
                select(KeyJobFailure).where(KeyJobFailure.job_id == job_id).order_by(KeyJobFailure.id).limit(limit)
            ).scalars()
            return [{"table": r.table_name, "row_id": r.row_id, "error": r.error, "at": r.at} for r in rows]

    def create(
        self,
        kind: str,
        target: str,
        previous: list[str],
        started_by: str,
        detail: dict[str, Any],
        active: str | None = None,
    ) -> KeyJob:
        """Record a new unfinished job holding its lease. ``Conflict`` when one of
        this kind is unfinished already (the unique constraint, on every node)."""
        now = self.app.clock()
        row = KeyJob(
            id=secrets.token_hex(8),
            kind=kind,
            active_kind=active or kind,
            target=target,
            previous=json.dumps(previous),
            started_by=started_by,
            state="running",
            phase="pass",
            total=0,
            done=0,
            failed=0,
            cursor="{}",
            milestone=0,
            started_at=now,
            updated_at=now,
            lease_holder=self.me,
            lease_expires=now + LEASE_SECONDS,
            detail=json.dumps(detail, sort_keys=True),
        )
        try:
            with self.app.db.write() as db:
                db.add(row)
        except (IntegrityError, Conflict) as exc:
            raise Conflict(f"a {active or kind} job is already unfinished") from exc
        return row

    def acquire(self, job_id: str) -> KeyJob:
        """Take the lease of an unfinished job, or of a failed one to re-run its sweep.
        Refused while a live process holds it."""
        now = self.app.clock()
        row = self.get(job_id)
        if row.state == "done":
            raise Conflict(f"job {job_id} is done")
        holder_dead = holder_is_dead(row.lease_holder)
        with self.app.db.write() as db:
            if row.state == "failed":
                # Re-open a job that ended with failed rows: its kind must be free.
                other = db.execute(select(KeyJob.id).where(KeyJob.active_kind == row.kind)).scalar_one_or_none()
                if other is not None:
                    raise Conflict(f"job {other} of kind {row.kind} is unfinished; resume it instead")
                db.execute(
                    update(KeyJob)
                    .where(KeyJob.id == job_id, KeyJob.state == "failed")
                    .values(active_kind=row.kind, state="running", phase="sweep", finished_at=None, failed=0)
                )
            cond = _lease_free(now, self.me)
            if holder_dead:
                cond = or_(cond, KeyJob.lease_holder == row.lease_holder)
            result = db.execute(
                update(KeyJob)
                .where(and_(KeyJob.id == job_id, KeyJob.active_kind.is_not(None), cond))
                .values(lease_holder=self.me, lease_expires=now + LEASE_SECONDS, state="running", updated_at=now)
            )
            if result.rowcount != 1:
                db.rollback()
                raise Conflict(
                    f"job {job_id} ({row.kind}) is being run by {row.lease_holder} "
                    f"(lease until {row.lease_expires or 0:.0f}); it resumes itself, or here once that lease expires"
                )
        return self.get(job_id)

    def renew(self, db: Any, job_id: str, **values: Any) -> None:
        """Renew the lease and record progress inside the caller's transaction."""
        now = self.app.clock()
        changes: dict[str, Any] = {"lease_expires": now + LEASE_SECONDS, "updated_at": now}
        changes.update(values)
        result = db.execute(update(KeyJob).where(KeyJob.id == job_id, KeyJob.lease_holder == self.me).values(**changes))
        if result.rowcount != 1:
            raise LeaseLost(job_id)

    def record_failure(self, db: Any, job_id: str, table: str, row_id: str, error: str) -> None:
        db.add(
            KeyJobFailure(job_id=job_id, table_name=table, row_id=row_id[:128], error=error[:256], at=self.app.clock())
        )

    def release(self, job_id: str, state: str) -> None:
        """Let go of the lease (Ctrl-C: the job stays unfinished, ``paused``)."""
        with self.app.db.write() as db:
            db.execute(
                update(KeyJob)
                .where(KeyJob.id == job_id, KeyJob.lease_holder == self.me)
                .values(lease_holder=None, lease_expires=None, state=state, updated_at=self.app.clock())
            )
