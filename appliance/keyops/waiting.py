"""Rotations that need each user: pepper and ukw.

- *pepper*: a password hash can be re-computed only with the password, a PIN key
  only with the PIN. The new version peppers every new hash at once; a user's
  password hash moves at their next successful login and their PIN key at their
  next unlock (appliance/login.py). The job counts the users still referencing an
  old pepper version and stays ``waiting`` until none does; running the same
  command again re-counts and ends it (``done``) when nobody is left. Old versions
  stay on the token (and cannot be retired) while users reference them.
- *ukw*: the inner layer of a private key is the key itself wrapped by the token,
  and the token unwraps it only as non-extractable: it can never be wrapped again,
  under any key, by anyone (that is the point). A new ukw version therefore moves
  a user only with a new key pair: the job asks for one for every user whose pair
  predates the new version (made at their next unlock, as `coffre user
  rotate-key` does) and waits like the pepper job.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from appliance.keyops.engine import Options
from appliance.keyops.finish import finish
from appliance.keyops.jobs import JobStore, JobView
from appliance.models import KeyJob, User

if TYPE_CHECKING:
    from appliance.core import Appliance


def _enrolled() -> Any:
    return User.password_hash.is_not(None)


def pepper_usage(app: Appliance) -> dict[str, int]:
    """Users referencing each pepper version (by their password hash or PIN key)."""
    usage: dict[str, int] = {}
    with app.db.read() as db:
        for column in (User.password_pepper, User.pin_pepper):
            for label, count in db.execute(select(column, func.count()).where(column.is_not(None)).group_by(column)):
                usage[label] = usage.get(label, 0) + int(count)
    return usage


def users_left(app: Appliance, kind: str, target: str, switched_at: float | None) -> int:
    with app.db.read() as db:
        if kind == "pepper":
            query = select(func.count()).where(
                _enrolled(),
                or_(User.password_pepper != target, User.pin_pepper != target),
            )
        else:
            query = select(func.count()).where(User.private_key_blob.is_not(None), User.status != "deleted")
            if switched_at is not None:
                query = query.where(or_(User.key_created_at.is_(None), User.key_created_at < switched_at))
        return int(db.execute(query).scalar_one())


def _request_new_pairs(app: Appliance, switched_at: float) -> int:
    with app.db.read() as db:
        ids = list(
            db.execute(
                select(User.id).where(
                    User.status == "active",
                    User.key_rotation_due.is_(False),
                    or_(User.key_created_at.is_(None), User.key_created_at < switched_at),
                )
            ).scalars()
        )
    for user_id in ids:
        app.userkeys.request_rotation(None, user_id)
    return len(ids)


def run_waiting(app: Appliance, store: JobStore, job: KeyJob, options: Options) -> JobView:
    detail: dict[str, Any] = json.loads(job.detail or "{}")
    if job.kind == "ukw" and not detail.get("requested") and job.switched_at is not None:
        detail["requested"] = _request_new_pairs(app, job.switched_at)
    left = users_left(app, job.kind, job.target, job.switched_at)
    detail["users_left"] = left
    if job.kind == "pepper":
        detail["by_version"] = pepper_usage(app)
    if left == 0:
        view = finish(app, store, job.id, job.target, {"users_left": 0})
    else:
        with app.db.write() as db:
            total = max(job.total, left)
            store.renew(
                db,
                job.id,
                state="waiting",
                phase="waiting",
                total=total,
                done=total - left,
                detail=json.dumps(detail, sort_keys=True),
                lease_holder=None,
                lease_expires=None,
            )
        view = JobView.of(store.get(job.id))
    if options.progress:
        options.progress(view)
    return view
