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
  a user only with a new key pair: the job asks for one for every user whose key
  is not under the new version (made at their next unlock, as `coffre user
  rotate-key` does) and waits like the pepper job. Which version each key is
  under is read from the data (appliance/keyops/ukw.py), never from timestamps.
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
    if kind == "pepper":
        with app.db.read() as db:
            query = select(func.count()).where(
                _enrolled(),
                or_(User.password_pepper != target, User.pin_pepper != target),
            )
            return int(db.execute(query).scalar_one())
    # ukw: counted from the data (a pair a node made under the old version while its
    # root cache was stale still counts as left).
    return len(_not_on(app, target))


def _not_on(app: Appliance, target: str) -> list[str]:
    from appliance.keyops.ukw import user_labels

    with app.db.read() as db:
        live = set(db.execute(select(User.id).where(User.status != "deleted")).scalars())
    return sorted(u for u, label in user_labels(app).items() if label != target and u in live)


def _request_new_pairs(app: Appliance, target: str) -> int:
    """Ask for a new pair for each active user whose key is not under ``target`` and
    who has no request pending (each run: a pair made meanwhile under the old
    version is asked for again)."""
    left = set(_not_on(app, target))
    with app.db.read() as db:
        ids = list(
            db.execute(select(User.id).where(User.status == "active", User.key_rotation_due.is_(False))).scalars()
        )
    asked = 0
    for user_id in ids:
        if user_id in left:
            app.userkeys.request_rotation(None, user_id)
            asked += 1
    return asked


def run_waiting(app: Appliance, store: JobStore, job: KeyJob, options: Options) -> JobView:
    detail: dict[str, Any] = json.loads(job.detail or "{}")
    if job.kind == "ukw" and job.switched_at is not None:
        detail["requested"] = detail.get("requested", 0) + _request_new_pairs(app, job.target)
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
