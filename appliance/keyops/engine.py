"""Running a job over its movers: batches, parallel token sessions, a cursor.

Phases, each recorded in the job row so a killed job resumes where it was:

1. ``pass``: every mover's rows after the cursor, in batches; each batch is
   computed in parallel (one pooled token session per worker, no transaction
   held), then written in one short transaction together with the cursor, the
   counts and the renewed lease: after a kill -9 either the whole batch and its
   cursor are in, or neither.
2. ``settle``: nodes trust their cached newest-root label for
   ``hsm.root_ttl_seconds``; until that long after the new version appeared, a
   node may still seal under the old one. The job waits it out (renewing its lease).
3. ``sweep``: the rows still under an old version are found again *from the data*
   (the blobs' own headers, not the cursor or a label column) and moved; the job
   ends when a re-count finds nothing left but rows that failed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.keyops.jobs import JobStore, JobView
from appliance.keyops.movers import Mover
from appliance.keyops.registry import Row, RowRefused
from appliance.models import KeyJob
from hsm.errors import DecryptionFailed, KeyNotFound, MalformedEnvelope

if TYPE_CHECKING:
    from appliance.core import Appliance

SWEEP_ROUNDS = 5
REPORT_EVERY = 0.25
CAS_RETRIES = 3
# A test seam: kill this process with SIGKILL after this many row writes (inside
# an uncommitted batch), to prove a job survives kill -9 at any row.
_KILL_ENV = "COFFRE_KEYOPS_KILL_AT_ROW"

Progress = Callable[[JobView], None]


@dataclass
class Options:
    batch: int = 200
    # Token sessions computing a batch in parallel (at most the pool's size), besides
    # the one reading ahead. On SoftHSM (one lock around the token) more than one
    # was slower (bench/rotation.py); a network HSM with many cores gains from more.
    threads: int = 1
    # Seconds between batches: requests get the token and the database. At 20 ms the
    # item-read p99 stayed within 2x idle during a 100k-key pass on 2 cores, and the
    # pass (~20 s) still ends inside the settle wait (bench/rotation.py).
    pause: float = 0.02
    settle: float | None = None  # default: hsm.root_ttl_seconds + 1
    progress: Progress | None = None


@dataclass
class _Run:
    job_id: str
    target: str
    done: int
    failed: int
    total: int
    milestone: int
    cursor: dict[str, str]
    failed_ids: set[tuple[str, str]] = field(default_factory=set)
    rows_written: int = 0


class Engine:
    def __init__(self, app: Appliance, store: JobStore, movers: Sequence[Mover], options: Options) -> None:
        self.app = app
        self.store = store
        self.movers = list(movers)
        self.options = options
        self.threads = max(1, min(options.threads or 1, app.settings.hsm.pool_size - 1 or 1))
        self._ahead: ThreadPoolExecutor
        self._reported = 0.0
        kill = os.environ.get(_KILL_ENV, "")
        self._kill_at = int(kill) if kill.isdigit() else None

    # -- the phases ----------------------------------------------------------------

    def run(self, job: KeyJob) -> JobView:
        run = _Run(
            job_id=job.id,
            target=job.target,
            done=job.done,
            failed=job.failed,
            total=job.total,
            milestone=job.milestone,
            cursor=json.loads(job.cursor or "{}"),
        )
        phase = job.phase
        with (
            ThreadPoolExecutor(self.threads, thread_name_prefix="keyjob") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="keyjob-ahead") as self._ahead,
        ):
            if phase == "pass":
                if run.total == 0:
                    run.total = sum(m.count(self.app, run.target) for m in self.movers)
                    self._save(run)
                self._report(run)
                for mover in self.movers:
                    self._pass(pool, mover, run)
                self._report(run, force=True)
                phase = self._phase(run, "settle")
            if phase == "settle":
                self._settle(run, job.switched_at)
                phase = self._phase(run, "sweep")
            if phase == "sweep":
                self._sweep(pool, run)
        return self._finish(run)

    def _pass(self, pool: ThreadPoolExecutor, mover: Mover, run: _Run) -> None:
        """Batches after the cursor, pipelined: the next batch is read and computed
        in the token (another thread, another session) while this one is written."""

        def read_and_compute(after: str | None) -> tuple[list[Row], list[tuple[Row, dict[str, Any] | None, str]]]:
            rows = mover.pending(self.app, run.target, after, self.options.batch)
            return rows, self._compute_all(pool, mover, rows, run.target) if rows else []

        ahead = self._ahead.submit(read_and_compute, run.cursor.get(mover.name))
        while True:
            rows, results = ahead.result()
            if not rows:
                return
            last = mover.row_id(rows[-1])
            ahead = self._ahead.submit(read_and_compute, last)
            self._batch(pool, mover, rows, run, cursor=last, results=results)
            if self.options.pause:
                time.sleep(self.options.pause)

    def _settle(self, run: _Run, switched_at: float | None) -> None:
        settle = self.options.settle
        if settle is None:
            settle = self.app.settings.hsm.root_ttl_seconds + 1.0
        until = (switched_at or self.app.clock()) + settle
        while True:
            left = until - self.app.clock()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))
            with self.app.db.write() as db:
                self.store.renew(db, run.job_id)

    def _sweep(self, pool: ThreadPoolExecutor, run: _Run) -> None:
        for _ in range(SWEEP_ROUNDS):
            moved = 0
            for mover in self.movers:
                ids = [i for i in mover.stale(self.app, run.target) if (mover.name, i) not in run.failed_ids]
                for start in range(0, len(ids), self.options.batch):
                    rows = mover.rows(self.app, ids[start : start + self.options.batch])
                    moved += self._batch(pool, mover, rows, run, cursor=None)
            if moved == 0:
                return

    def _finish(self, run: _Run) -> JobView:
        remaining = sum(m.count(self.app, run.target) for m in self.movers)
        now = self.app.clock()
        state = "done" if remaining == 0 else "failed"
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.store.renew(
                db,
                run.job_id,
                state=state,
                phase="finished",
                active_kind=None,
                failed=remaining,
                done=run.done,
                total=max(run.total, run.done + remaining),
                finished_at=now,
                lease_holder=None,
                lease_expires=None,
            )
            self.app.audit.append(
                db,
                work,
                "key.job.done" if state == "done" else "key.job.failed",
                actor="keyops",
                target=run.job_id,
                target_label=run.target,
                done=run.done,
                failed=remaining,
            )
        view = JobView.of(self.store.get(run.job_id))
        if self.options.progress:
            self.options.progress(view)
        return view

    # -- one batch -----------------------------------------------------------------------

    def _compute(self, mover: Mover, rows: list[Row], target: str) -> list[tuple[Row, dict[str, Any] | None, str]]:
        out: list[tuple[Row, dict[str, Any] | None, str]] = []
        with self.app.keystore.work() as work:
            for row in rows:
                try:
                    out.append((row, mover.compute(self.app, work, row, target), ""))
                except (DecryptionFailed, MalformedEnvelope):
                    out.append((row, None, "does not open under the key it names (DecryptionFailed)"))
                except KeyNotFound as exc:
                    out.append((row, None, f"key missing: {type(exc).__name__}"))
                except RowRefused as exc:
                    out.append((row, None, str(exc)))
        return out

    def _compute_all(
        self, pool: ThreadPoolExecutor, mover: Mover, rows: list[Row], target: str
    ) -> list[tuple[Row, dict[str, Any] | None, str]]:
        if self.threads == 1:
            return self._compute(mover, rows, target)
        chunks = [rows[i :: self.threads] for i in range(self.threads) if rows[i :: self.threads]]
        return [r for part in pool.map(lambda c: self._compute(mover, c, target), chunks) for r in part]

    def _batch(
        self,
        pool: ThreadPoolExecutor,
        mover: Mover,
        rows: list[Row],
        run: _Run,
        cursor: str | None,
        results: list[tuple[Row, dict[str, Any] | None, str]] | None = None,
    ) -> int:
        """Move ``rows``; rows a request changed meanwhile are re-read and tried again."""
        moved = 0
        pending = rows
        for attempt in range(CAS_RETRIES):
            if results is None:
                results = self._compute_all(pool, mover, pending, run.target)
            last = attempt == CAS_RETRIES - 1
            with self.app.keystore.work() as work, self.app.db.write() as db:
                changes: list[tuple[Row, dict[str, Any]]] = []
                for row, values, error in results:
                    row_id = mover.row_id(row)
                    if error:
                        if (mover.name, row_id) not in run.failed_ids:
                            run.failed_ids.add((mover.name, row_id))
                            run.failed += 1
                            self.store.record_failure(db, run.job_id, mover.table, row_id, error)
                    elif values is not None:
                        changes.append((row, values))
                if self._kill_at is not None:  # the test seam: die at a given row write
                    lost = []
                    for row, values in changes:
                        if not mover.apply(db, work, row, values):
                            lost.append(mover.row_id(row))
                        self._maybe_die(run)
                else:
                    lost = mover.apply_many(db, work, changes)
                refused: list[tuple[str, str]] = getattr(mover, "refused", [])
                for row_id, error in refused:
                    lost.append(row_id)
                    if (mover.name, row_id) not in run.failed_ids:
                        run.failed_ids.add((mover.name, row_id))
                        run.failed += 1
                        self.store.record_failure(db, run.job_id, mover.table, row_id, error)
                refused.clear()
                applied = len(changes) - len(lost)
                moved += applied
                run.done += applied
                if cursor is not None and (not lost or last):
                    run.cursor[mover.name] = cursor
                run.total = max(run.total, run.done + run.failed)
                self._milestones(db, work, run)
                self.store.renew(
                    db,
                    run.job_id,
                    done=run.done,
                    failed=run.failed,
                    total=run.total,
                    milestone=run.milestone,
                    cursor=json.dumps(run.cursor, sort_keys=True),
                )
            self._report(run)
            if not lost:
                break
            # Changed by a request meanwhile: re-read; whatever is left goes to the sweep.
            pending = mover.rows(self.app, lost)
            results = None
        return moved

    def _milestones(self, db: Any, work: Any, run: _Run) -> None:
        if run.total <= 0:
            return
        step = min(10, (run.done + run.failed) * 10 // run.total)
        while run.milestone < step:
            run.milestone += 1
            self.app.audit.append(
                db,
                work,
                "key.job.progress",
                actor="keyops",
                target=run.job_id,
                percent=run.milestone * 10,
                done=run.done,
                failed=run.failed,
                total=run.total,
            )

    def _maybe_die(self, run: _Run) -> None:
        run.rows_written += 1
        if self._kill_at is not None and run.rows_written >= self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    # -- bookkeeping --------------------------------------------------------------------------

    def _phase(self, run: _Run, phase: str) -> str:
        with self.app.db.write() as db:
            self.store.renew(db, run.job_id, phase=phase)
        return phase

    def _save(self, run: _Run) -> None:
        with self.app.db.write() as db:
            self.store.renew(db, run.job_id, total=run.total)

    def _report(self, run: _Run, force: bool = False) -> None:
        """Progress to the caller, at most every quarter second (it reads the job row)."""
        now = time.monotonic()
        if self.options.progress and (force or now - self._reported >= REPORT_EVERY):
            self._reported = now
            self.options.progress(JobView.of(self.store.get(run.job_id)))
