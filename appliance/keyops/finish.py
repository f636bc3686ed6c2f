"""Ending a job that has no rows to move (audit) or that waits for users (pepper, ukw)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from appliance.keyops.jobs import JobStore, JobView

if TYPE_CHECKING:
    from appliance.core import Appliance


def finish(app: Appliance, store: JobStore, job_id: str, target: str, detail: dict[str, Any]) -> JobView:
    with app.keystore.work() as work, app.db.write() as db:
        store.renew(
            db,
            job_id,
            state="done",
            phase="finished",
            active_kind=None,
            finished_at=app.clock(),
            lease_holder=None,
            lease_expires=None,
            detail=json.dumps(detail, sort_keys=True),
        )
        app.audit.append(db, work, "key.job.done", actor="keyops", target=job_id, target_label=target, **detail)
    return JobView.of(store.get(job_id))
