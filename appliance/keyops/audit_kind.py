"""Audit key rotation: new entries are MACed under the new version (each entry
records its key label, so old entries keep verifying under theirs), and one
``audit.key_rotated`` entry links the two: MACed under the new version like every
new entry, it carries an endorsement MAC made with the old version over the
deployment, both labels and the job id, so the hand-over is signed by both keys."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from appliance.errors import Conflict
from appliance.keyops.engine import Options
from appliance.keyops.finish import finish
from appliance.keyops.jobs import JobStore, JobView
from appliance.models import KeyJob
from hsm.keystore import Work
from hsm.labels import RootKind

if TYPE_CHECKING:
    from appliance.core import Appliance


def _link(deployment: str, old: str, new: str, job_id: str) -> bytes:
    return f"coffre/audit-rotation/v1|{deployment}|{old}|{new}|{job_id}".encode("ascii")


def endorsement(work: Work, deployment: str, old: str, new: str, job_id: str) -> str:
    return work.mac(RootKind.AUDIT, _link(deployment, old, new, job_id), old)[1].hex()


def endorsement_ok(work: Work, deployment: str, old: str, new: str, job_id: str, stored: str) -> bool:
    return hmac.compare_digest(endorsement(work, deployment, old, new, job_id), stored)


def link_chains(app: Appliance, store: JobStore, job: KeyJob, options: Options) -> JobView:
    import json

    previous = json.loads(job.previous or "[]")
    old = previous[-1] if previous else None
    with app.keystore.work() as work, app.db.write() as db:
        work.refresh_roots()
        if work.current_label(RootKind.AUDIT) != job.target:
            raise Conflict(f"{job.target} is not the newest audit key on the token")
        details = {"old": old, "new": job.target}
        if old is not None:
            details["endorsement"] = endorsement(work, app.integrity.deployment(), old, job.target, job.id)
        app.audit.append(db, work, "audit.key_rotated", actor="keyops", target=job.id, **details)
        store.renew(db, job.id)
    view = finish(app, store, job.id, job.target, {"linked": old})
    if options.progress:
        options.progress(view)
    return view
