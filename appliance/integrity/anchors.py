"""Row MACs anchored in the token: what a database writer cannot forge or roll back.

Each anchored row (users, sessions, vaults, vault members) carries a MAC under
the HSM ``bind`` root over its identity, the columns that grant or limit access,
and the current value of one counter of its domain's *anchor table*, a
1,024-entry counter table kept in the token (``hsm/state.py``). The row's bucket
(a hash of the user id or vault id) picks the counter.

- **Forgery**: without the token nobody can compute a MAC, so a changed role,
  admin flag, lock, failure count, session expiry or planted row is refused.
- **Rollback**: every change or deletion of an anchored row advances its bucket's
  counter and re-MACs the bucket's other live rows. A row restored from an older
  copy carries a MAC over an older counter value and is refused. Inserts do not
  advance (a new row invalidates no older state).

Writers hold the domain's lock row (``anchor_locks``) for the read-advance-write
of the token table; the token is written *before* the database commits, so a
reader may, for a moment, see the new counter with the old rows: a failed check
is therefore retried once under the same lock before it is called tampering.
If the commit then fails, the bucket is repaired at once (rows that verify under
the old counter are re-MACed under the new one). A crash in that window leaves
the bucket failing closed until ``coffre integrity repair`` (audited).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.errors import IntegrityFailure
from appliance.integrity.rows import BUCKETS, SPECS, Domain, RowSpec, bucket_of
from appliance.models import AnchorLock, Deployment
from hsm import state
from hsm.errors import KeyNotFound
from hsm.keystore import Work
from hsm.labels import RootKind

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("coffre.integrity")


class BrokenRow(IntegrityFailure):
    """A stored row failed its MAC (forged, edited or rolled back)."""

    def __init__(self, what: str, target: str, actor: str | None = None, client_addr: str | None = None) -> None:
        super().__init__()
        self.what = what
        self.target = target
        self.actor = actor
        self.client_addr = client_addr
        self.audited = False


@dataclass
class Change:
    """Rows added during a ``changing`` block, sealed with the advanced counter."""

    added: list[tuple[RowSpec, Any]] = field(default_factory=list)

    def add(self, spec: RowSpec, row: Any) -> None:
        self.added.append((spec, row))


def _target(spec: RowSpec, row: Any) -> str:
    return "/".join(str(part) for part in spec.identity(row))


class Integrity:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self._deployment: str | None = None
        self._lock = threading.Lock()

    # -- the deployment and its anchor tables ---------------------------------------

    def deployment(self) -> str:
        if self._deployment is None:
            with self.app.db.read() as db:
                row = db.get(Deployment, 1)
            if row is None:
                raise BrokenRow("deployment", "1")
            with self._lock:
                self._deployment = row.deployment_id
        return self._deployment

    def table_name(self, domain: Domain) -> str:
        return f"{self.deployment()}-{domain.value}"

    def counters(self, work: Work, domain: Domain) -> list[int]:
        return state.read_counters(work, self.table_name(domain), BUCKETS)

    def counter(self, work: Work, domain: Domain, key: str) -> int:
        return state.read_counter(work, self.table_name(domain), BUCKETS, bucket_of(key))

    # -- MACs -------------------------------------------------------------------------

    def seal(self, work: Work, spec: RowSpec, row: Any, counter: int) -> None:
        bucket = spec.bucket(row)
        label, mac = work.mac(RootKind.BIND, spec.mac_input(self.deployment(), row, bucket, counter))
        row.anchor_bucket = bucket
        row.row_mac = f"{label}:{mac.hex()}"

    def _valid_with(self, work: Work, spec: RowSpec, row: Any, counter: int) -> bool:
        stored = row.row_mac
        bucket = spec.bucket(row)
        if not stored or ":" not in stored or row.anchor_bucket != bucket:
            return False
        label, _, expected = stored.partition(":")
        try:
            _, mac = work.mac(RootKind.BIND, spec.mac_input(self.deployment(), row, bucket, counter), label)
        except KeyNotFound:
            return False
        return hmac.compare_digest(mac.hex(), expected)

    def valid(self, work: Work, spec: RowSpec, row: Any) -> bool:
        return self._valid_with(work, spec, row, self.counter(work, spec.domain, spec.bucket_key(row)))

    def require(
        self,
        db: Any,
        work: Work,
        spec: RowSpec,
        row: Any,
        *,
        actor: str | None = None,
        client_addr: str | None = None,
    ) -> Any | None:
        """The row if its MAC verifies; ``None`` when it vanished meanwhile (a
        concurrent deletion); else ``BrokenRow``. A failure is re-checked once under
        the domain lock, where no change can be half-done."""
        if self.valid(work, spec, row):
            return row
        fresh: Any | None
        if db is not None and db.info.get("writing"):
            if self.app.db.is_sqlite:  # this transaction already excludes every writer
                raise BrokenRow(spec.table, _target(spec, row), actor, client_addr)
            self.lock(db, spec.domain)
            db.expire_all()
            fresh = db.get(spec.model, spec.identity(row))
            if fresh is None or self.valid(work, spec, fresh):
                return fresh
        else:
            with self.app.db.write() as other:
                self.lock(other, spec.domain)
                fresh = other.get(spec.model, spec.identity(row))
                if fresh is None:
                    return None
                if self.valid(work, spec, fresh):
                    other.expunge(fresh)
                    return fresh
        raise BrokenRow(spec.table, _target(spec, row), actor, client_addr)

    def verified(self, db: Any, work: Work, spec: RowSpec, rows: Any, *, actor: str | None = None) -> list[Any]:
        """The rows whose MACs verify, reading each bucket's counter once; a row that
        fails is re-checked as ``require`` does (BrokenRow if it still fails)."""
        counters: dict[int, int] = {}
        out = []
        for row in rows:
            bucket = spec.bucket(row)
            if bucket not in counters:
                counters[bucket] = self.counter(work, spec.domain, spec.bucket_key(row))
            if self._valid_with(work, spec, row, counters[bucket]):
                out.append(row)
                continue
            checked = self.require(db, work, spec, row, actor=actor)
            if checked is not None:
                out.append(checked)
        return out

    # -- writing ------------------------------------------------------------------------

    def lock(self, db: Any, domain: Domain) -> None:
        db.execute(select(AnchorLock.domain).where(AnchorLock.domain == domain.value).with_for_update())

    def seal_new(self, db: Any, work: Work, spec: RowSpec, *rows: Any) -> None:
        """MAC rows being inserted with their buckets' current counters."""
        self.lock(db, spec.domain)
        counters = self.counters(work, spec.domain)
        for row in rows:
            self.seal(work, spec, row, counters[spec.bucket(row)])

    @contextmanager
    def changing(self, db: Any, work: Work, domain: Domain, *bucket_keys: str) -> Iterator[Change]:
        """Wrap a change or deletion of anchored rows whose buckets are named by
        ``bucket_keys`` (user ids, vault ids). Inside the caller's write transaction.

        Only rows that verify *before* the change (an allow-list, locked ``FOR
        UPDATE``) and rows the caller adds are sealed afterwards, each in the bucket
        its identity gives (never the stored ``anchor_bucket``): a row a database
        writer plants or moves into the bucket meanwhile is never blessed."""
        self.lock(db, domain)
        table = self.table_name(domain)
        before = self.counters(work, domain)
        buckets = sorted({bucket_of(key) for key in bucket_keys})
        valid = self._valid_rows(db, work, domain, buckets, before)
        change = Change()
        yield change
        db.flush()
        after = list(before)
        for bucket in buckets:
            after[bucket] += 1
        state.write_counters(work, table, after)
        self._on_rollback(db, domain, buckets, before)
        for spec, identity in valid:
            row = db.get(spec.model, identity)
            if row is not None:  # deleted by the change otherwise
                self.seal(work, spec, row, after[spec.bucket(row)])
        for spec, row in change.added:
            self.seal(work, spec, row, after[spec.bucket(row)])
        db.flush()

    def _rows(self, db: Any, spec: RowSpec, buckets: list[int], lock: bool = False) -> list[Any]:
        query = select(spec.model).where(spec.model.anchor_bucket.in_(buckets))
        return list(db.execute(query.with_for_update() if lock else query).scalars())

    def _valid_rows(
        self, db: Any, work: Work, domain: Domain, buckets: list[int], counters: list[int]
    ) -> list[tuple[RowSpec, tuple[Any, ...]]]:
        valid = []
        for spec in SPECS[domain]:
            for row in self._rows(db, spec, buckets, lock=True):
                if self._valid_with(work, spec, row, counters[spec.bucket(row)]):
                    valid.append((spec, spec.identity(row)))
        return valid

    def _on_rollback(self, db: Any, domain: Domain, buckets: list[int], before: list[int]) -> None:
        """The token moved but the database may not commit: if it rolls back,
        re-MAC the rows that still verify under the old counters."""

        def repair() -> None:
            try:
                self.repair(domain, buckets, before)
            except Exception as exc:  # noqa: BLE001 - logged; the bucket then fails closed
                log.error("anchor repair after a rollback failed: %s", type(exc).__name__)

        db.info.setdefault("on_rollback", []).append(repair)

    def repair(self, domain: Domain, buckets: list[int], accept: list[int] | None = None) -> int:
        """Re-MAC, under the current counters, the rows of ``buckets`` that verify
        under ``accept`` (the counters before an advance whose commit failed).
        With ``accept=None`` (an operator's `coffre integrity repair`), every row
        there is trusted as it is: the command says so and it is audited."""
        sealed = 0
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.lock(db, domain)
            current = self.counters(work, domain)
            for spec in SPECS[domain]:
                for row in self._rows(db, spec, buckets):
                    if accept is None or self._valid_with(work, spec, row, accept[row.anchor_bucket]):
                        self.seal(work, spec, row, current[row.anchor_bucket])
                        sealed += 1
        return sealed

    def scan(self) -> dict[str, list[str]]:
        """Every anchored row whose MAC does not verify, per table (`coffre integrity check`)."""
        failed: dict[str, list[str]] = {}
        with self.app.keystore.work() as work, self.app.db.read() as db:
            for domain in Domain:
                counters = self.counters(work, domain)
                for spec in SPECS[domain]:
                    for row in db.execute(select(spec.model)).scalars():
                        bucket = spec.bucket(row)
                        if not self._valid_with(work, spec, row, counters[bucket]):
                            failed.setdefault(spec.table, []).append(_target(spec, row))
        return failed

    def repair_all(self, actor: str) -> int:
        """Trust the database as it is now and re-MAC every anchored row under the
        current counters: for an operator after a crash between a counter's move and
        its commit (the bucket then fails closed). Audited; it re-blesses whatever a
        database writer may have changed, which the command says before it runs."""
        sealed = 0
        for domain in Domain:
            sealed += self.repair(domain, list(range(BUCKETS)))
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.app.audit.append(db, work, "integrity.repaired", actor=actor, rows=sealed)
        return sealed

    # -- auditing failures ----------------------------------------------------------------

    def record(self, exc: BrokenRow) -> None:
        """Write the ``integrity.failed`` entry (outside any open transaction)."""
        if exc.audited:
            return
        exc.audited = True
        log.warning("integrity check failed: %s %s", exc.what, exc.target)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.app.audit.append(
                db,
                work,
                "integrity.failed",
                actor=exc.actor,
                target=exc.target,
                client_addr=exc.client_addr,
                what=exc.what,
            )

    def dismantle(self) -> int:
        """Remove this deployment's state from the token: its anchor tables and its
        audit genesis marker (a deployment being dismantled, or a test's database
        being thrown away). Everything the deployment's database holds then fails
        its checks."""
        from appliance.audit import genesis_marker

        with self.app.keystore.work() as work:
            state.clear_marker(work, genesis_marker(self.deployment()))
            return sum(state.destroy_counters(work, self.table_name(d)) for d in Domain)
