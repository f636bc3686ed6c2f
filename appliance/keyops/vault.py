"""Vault key rotation on demand, recorded as a key job of kind ``vault``.

Only a member can open a vault key (it is wrapped to members' public keys), so:

- a vault administrator (API ``POST /api/v1/vaults/{id}/rotate``, admin UI) rotates
  it at once: every item re-encrypted under a new key wrapped for every member, in
  one transaction (``Vaults.rotate_key``, what member removal does); the job is
  ``done`` when the call returns;
- an appliance administrator who is not a vault administrator, and the operator
  (``coffre vault rotate VAULT_ID``), schedule it: the vault is marked
  ``vault_rotations_due`` (as a user deletion does) and the job stays ``waiting``
  until one of the vault's administrators acts (their next vault listing rotates
  it); it is then ``done``.

One unfinished job per vault (``active_kind`` = ``vault:ID``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import select

from appliance.errors import Forbidden, NotFound
from appliance.keyops.finish import finish
from appliance.keyops.jobs import JobStore, JobView
from appliance.models import KeyJob, Vault, VaultMember, VaultRotationDue
from appliance.tokens import is_id

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.sessions import Principal


def _key_version(app: Appliance, vault_id: str) -> int | None:
    with app.db.read() as db:
        vault = db.get(Vault, vault_id)
        return None if vault is None else int(vault.key_version)


def rotate_vault(app: Appliance, store: JobStore, principal: Principal | None, vault_id: str, actor: str) -> JobView:
    if not isinstance(vault_id, str) or not is_id(vault_id):
        raise NotFound("no such vault")
    version = _key_version(app, vault_id)
    if version is None:
        raise NotFound("no such vault")
    is_vault_admin = False
    if principal is not None:
        with app.db.read() as db:
            member = db.get(VaultMember, (vault_id, principal.user_id))
            is_vault_admin = member is not None and member.role == "admin"
        if not is_vault_admin and not principal.is_admin:
            raise Forbidden("only the vault's administrators or an appliance administrator can rotate its key")
    active = f"vault:{vault_id}"
    existing = store.unfinished(active)
    if existing is not None:
        refresh(app, store, existing)
        existing = store.unfinished(active)
    if existing is not None and not is_vault_admin:
        return JobView.of(existing)
    job = existing or store.create("vault", vault_id, [], actor, {"key_version": version}, active=active)
    if existing is None:
        with app.keystore.work() as work, app.db.write() as db:
            app.audit.append(db, work, "key.job.started", actor=actor, target=job.id, kind="vault", vault=vault_id)
    if is_vault_admin:
        assert principal is not None
        store.acquire(job.id)
        items = app.vaults.rotate_key(principal, vault_id)
        with app.db.write() as db:
            store.renew(db, job.id, total=items, done=items)
        return finish(app, store, job.id, vault_id, {"items": items, "key_version": version + 1})
    with app.db.write() as db:
        if db.get(VaultRotationDue, vault_id) is None:
            db.add(VaultRotationDue(vault_id=vault_id, since=app.clock(), reason="requested"))
        store.renew(db, job.id, state="waiting", phase="waiting", lease_holder=None, lease_expires=None)
    return JobView.of(store.get(job.id))


def refresh(app: Appliance, store: JobStore, job: KeyJob) -> None:
    """A waiting vault job is done once the vault's key version moved past the one
    it recorded (or the vault is gone)."""
    wanted = json.loads(job.detail or "{}").get("key_version", 0)
    now = _key_version(app, job.target)
    if now is not None and now <= wanted:
        return
    try:
        store.acquire(job.id)
    except Exception:  # noqa: BLE001 - someone else is finishing it
        return
    finish(app, store, job.id, job.target, {"key_version": now, "vault_gone": now is None})


def refresh_waiting(app: Appliance, store: JobStore) -> None:
    with app.db.read() as db:
        waiting = list(
            db.execute(select(KeyJob).where(KeyJob.kind == "vault", KeyJob.active_kind.is_not(None))).scalars()
        )
    for job in waiting:
        refresh(app, store, job)
