"""Starting, resuming and listing key jobs (``app.keyops``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.errors import ClientError, Conflict
from appliance.keyops.engine import Engine, Options
from appliance.keyops.jobs import KINDS, JobStore, JobView
from appliance.keyops.movers import Mover
from appliance.models import KeyJob
from hsm.errors import RootKeyMissing
from hsm.labels import RootKind, label_for, parse_label

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.sessions import Principal

ROOT_KINDS = ("kek", "pepper", "audit", "bind", "ukw")


@dataclass(frozen=True)
class Plan:
    """What a rotation would change (``--dry-run``)."""

    kind: str
    target: str
    resumes: str | None
    tables: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "resumes": self.resumes,
            "tables": self.tables,
            "total": self.total,
            "dry_run": True,
        }


class KeyOps:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.store = JobStore(app)

    # -- which rows each kind moves ---------------------------------------------------------

    def movers(self, kind: str) -> list[Mover]:
        if kind == "kek":
            from appliance.keyops.movers import kek_movers

            return list(kek_movers())
        if kind == "bind":
            from appliance.keyops.bind import bind_movers

            return list(bind_movers(self.app))
        return []

    # -- planning ---------------------------------------------------------------------------------

    def _next_label(self, kind: str) -> tuple[str, list[str]]:
        root_kind = RootKind(kind)
        versions = [r for r in self.app.keystore.list_roots() if r.kind is root_kind]
        if not versions:
            raise RootKeyMissing(f"no {kind} root key on the token; run `coffre init`")
        return label_for(root_kind, versions[-1].version + 1), [r.label for r in versions]

    def plan(self, kind: str) -> Plan:
        """Count what a rotation of ``kind`` would change; changes nothing."""
        _check_kind(kind)
        if kind == "vault":
            raise ClientError("a vault key job has nothing to plan: it re-encrypts one vault at once")
        job = self.store.unfinished(kind)
        target = job.target if job is not None else self._next_label(kind)[0]
        tables: dict[str, int] = {}
        for mover in self.movers(kind):
            tables[mover.name] = tables.get(mover.name, 0) + mover.count(self.app, target)
        if kind in ("pepper", "ukw"):
            from appliance.keyops.waiting import users_left

            tables["users"] = users_left(self.app, kind, target, None)
        return Plan(kind, target, job.id if job is not None else None, tables)

    # -- running --------------------------------------------------------------------------------------

    def start(self, kind: str, actor: str, options: Options | None = None) -> JobView:
        """Start a rotation of ``kind``, or resume its unfinished job (the same target
        version: running the command again never makes another version)."""
        _check_kind(kind)
        if kind == "vault":
            raise ClientError("vault key rotations start from `coffre vault rotate VAULT_ID`")
        existing = self.store.unfinished(kind)
        if existing is not None:
            return self.resume(existing.id, options)
        target, previous = self._next_label(kind)
        job = self.store.create(kind, target, previous, actor, {})
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.app.audit.append(
                db, work, "key.job.started", actor=actor, target=job.id, kind=kind, target_label=target
            )
        return self._run(job, options or Options())

    def resume(self, job_id: str, options: Options | None = None) -> JobView:
        if self.store.get(job_id).kind == "vault":  # before acquire: it would take the lease
            raise Conflict("a vault key job resumes at its vault administrator's next action")
        job = self.store.acquire(job_id)
        return self._run(job, options or Options())

    def _run(self, job: KeyJob, options: Options) -> JobView:
        try:
            job = self._switch(job)
            if job.kind == "audit":
                from appliance.keyops.audit_kind import link_chains

                return link_chains(self.app, self.store, job, options)
            if job.kind in ("pepper", "ukw"):
                from appliance.keyops.waiting import run_waiting

                return run_waiting(self.app, self.store, job, options)
            return Engine(self.app, self.store, self.movers(job.kind), options).run(job)
        except KeyboardInterrupt:
            self.store.release(job.id, "paused")
            raise
        except Exception as exc:
            # The token or the database went away, or another process took the job
            # over: it stays unfinished (resumable); say so in the audit log if we can.
            self._interrupted(job, exc)
            raise

    def _interrupted(self, job: KeyJob, exc: Exception) -> None:
        from appliance.keyops.jobs import LeaseLost

        try:
            if not isinstance(exc, LeaseLost):
                self.store.release(job.id, "paused")
            with self.app.keystore.work() as work, self.app.db.write() as db:
                self.app.audit.append(
                    db,
                    work,
                    "key.job.failed",
                    actor="keyops",
                    target=job.id,
                    kind=job.kind,
                    reason=type(exc).__name__,
                    resumable=True,
                )
        except Exception:  # noqa: BLE001, S110 - the original error is what the caller reports
            pass

    def _switch(self, job: KeyJob) -> KeyJob:
        """Create the job's target version once (a job resumed after a crash between
        making the key and recording it finds it there) and record when it appeared."""
        if job.switched_at is not None:
            if not any(r.label == job.target for r in self.app.keystore.list_roots()):
                raise RootKeyMissing(f"{job.target}, the target of job {job.id}, is not on the token")
            return job
        parsed = parse_label(job.target)
        assert parsed is not None
        self.app.keystore.create_root_version(parsed[0], parsed[1])
        with self.app.keystore.work() as work:
            work.refresh_roots()
        with self.app.db.write() as db:
            self.store.renew(db, job.id, switched_at=self.app.clock())
        return self.store.get(job.id)

    def jobs(self, limit: int = 100, refresh: bool = True) -> list[JobView]:
        """Recent jobs; ``refresh`` first ends waiting vault jobs whose key moved."""
        if refresh:
            self.refresh_vault_jobs()
        return self.store.recent(limit)

    def refresh_vault_jobs(self) -> None:
        from appliance.keyops.vault import refresh_waiting

        refresh_waiting(self.app, self.store)

    def vault_rotation(self, principal: Principal | None, vault_id: str, actor: str) -> JobView:
        """Rotate a vault's key now (its administrator) or schedule it (see keyops/vault.py)."""
        from appliance.keyops.vault import rotate_vault

        return rotate_vault(self.app, self.store, principal, vault_id, actor)

    def job(self, job_id: str) -> JobView:
        return JobView.of(self.store.get(job_id))

    def failures(self, job_id: str) -> list[dict[str, Any]]:
        return self.store.failures(job_id)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ClientError(f"unknown key kind {kind!r}; one of {', '.join(KINDS)}")


def job_line(view: JobView) -> str:
    return json.dumps(view.as_dict(), sort_keys=True)
