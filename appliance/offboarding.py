"""Offboarding: delete a user for good (``coffre user delete``, DELETE /api/v1/users/{id}).

What a deletion does, in one transaction:

- every membership of the user goes. Where the deleting administrator can open
  the vault (they are a member, with a session), the vault key rotates at once,
  exactly as a member removal does (``Vaults._rotate_without``). Where they
  cannot (not a member; or the CLI, which has no session), the user's wrapped
  copy is deleted at once and the vault is marked ``vault_rotations_due``: its key
  rotates at the next action of one of its administrators (``rotate_due``, run when
  they list their vaults), who holds the key and a session. Meanwhile the deleted
  user can read nothing: their private key blobs, sessions and wrapped copies are
  gone (docs/security.md, "offboarding");
- when the user is the last administrator of a vault, the deletion is refused
  unless ``transfer_to`` names an enrolled user, who becomes administrator there:
  promoted if already a member; added otherwise, which needs the vault key, so only
  when the deleting administrator can open that vault (the rotation that follows
  wraps the new key for them);
- their sessions, login tickets, one-time tokens, key pair blobs and user row are
  deleted; the audit entry ``user.deleted`` keeps their id and e-mail address, so
  earlier entries still read (the audit view names deleted actors from it). The
  address can then be invited again: a new person, a new id, nothing of the old.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from appliance.accounts import normalize_email
from appliance.errors import Conflict, NotFound
from appliance.integrity import MEMBER, VAULT, Domain, audits_integrity
from appliance.models import (
    LoginTicket,
    OneTimeToken,
    RecoveryEscrow,
    RecoveryRequest,
    RecoveryRequestShare,
    User,
    Vault,
    VaultMember,
    VaultRotationDue,
)
from appliance.sessions import Principal
from appliance.tokens import is_id
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance


@dataclass
class Deletion:
    user_id: str
    email: str
    vaults: int = 0
    rotated: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    transferred: list[str] = field(default_factory=list)
    sessions_revoked: int = 0


class Offboarding:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    def _admins(self, db: Any, vault_id: str) -> int:
        return len(
            db.execute(
                select(VaultMember.user_id).where(VaultMember.vault_id == vault_id, VaultMember.role == "admin")
            ).all()
        )

    @audits_integrity
    def delete_user(
        self,
        actor: Principal | None,
        user_id: str,
        transfer_to: str | None = None,
        client_addr: str | None = None,
    ) -> Deletion:
        if actor is not None:
            self.app.accounts.require_admin(actor)
        actor_id = actor.user_id if actor else None
        if actor is not None and actor.user_id == user_id:
            raise Conflict("administrators cannot delete their own account")
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                user = self.app.accounts.checked_user(db, work, user_id, actor_id) if is_id(user_id) else None
                if user is None:
                    raise NotFound("no such user")
                cfg = self.app.recovery.config(db, work)
                if cfg is not None and user_id in self.app.recovery.officers_of(cfg):
                    raise Conflict("this user is a recovery officer: run coffre recovery rotate without them first")
                target = self._target(db, transfer_to, user_id)
                vault_ids = sorted(
                    db.execute(select(VaultMember.vault_id).where(VaultMember.user_id == user_id)).scalars()
                )
                opened: dict[str, tuple[Any, Any]] = {}
                refusals: list[str] = []
                for vault_id in vault_ids:
                    member = db.get(VaultMember, (vault_id, user_id))
                    mine = db.get(VaultMember, (vault_id, actor.user_id)) if actor is not None else None
                    if mine is not None and actor is not None:
                        checked = self.app.integrity.require(db, work, MEMBER, mine, actor=actor_id)
                        if checked is not None:
                            old = self.app.vaults.vault_key(work, actor, checked)
                            opened[vault_id] = (old, work.new_data_key())
                    if member is None or member.role != "admin" or self._admins(db, vault_id) > 1:
                        continue
                    if target is None or (
                        db.get(VaultMember, (vault_id, target.id)) is None and vault_id not in opened
                    ):
                        refusals.append(vault_id)
                if refusals:
                    if target is None:
                        raise Conflict(
                            "the user is the last administrator of a vault; name someone to transfer it to "
                            f"(vaults: {', '.join(refusals)})"
                        )
                    raise Conflict(
                        "the transfer target must already be a member of each vault the user administers alone, "
                        f"or the deleting administrator must be able to open it (vaults: {', '.join(refusals)})"
                    )
            return self._delete(work, actor, user, target, vault_ids, opened, client_addr)

    def _target(self, db: Any, transfer_to: str | None, user_id: str) -> User | None:
        if not transfer_to:
            return None
        target = db.execute(select(User).where(User.email == normalize_email(transfer_to))).scalar_one_or_none()
        if target is None or target.status != "active" or target.id == user_id or target.public_key is None:
            raise NotFound("no enrolled, active user with this e-mail address")
        return target  # type: ignore[no-any-return]

    def _delete(
        self,
        work: Work,
        actor: Principal | None,
        user: User,
        target: User | None,
        vault_ids: list[str],
        opened: dict[str, tuple[Any, Any]],
        client_addr: str | None,
    ) -> Deletion:
        actor_id = actor.user_id if actor else None
        report = Deletion(user.id, user.email, len(vault_ids))
        now = self.app.clock()
        with self.app.db.write() as db:
            self.app.integrity.lock(db, Domain.USERS)  # anchor order: users, vaults, sessions
            for vault_id in vault_ids:
                self.app.vaults.lock(db, vault_id)
            db.expire_all()
            for vault_id in vault_ids:
                member = db.get(VaultMember, (vault_id, user.id))
                vault = db.get(Vault, vault_id)
                if member is None or vault is None:
                    continue
                vault = self.app.integrity.require(db, work, VAULT, vault, actor=actor_id)
                if vault is None:
                    continue
                if target is not None and member.role == "admin" and self._admins(db, vault_id) <= 1:
                    self._transfer(db, work, actor, vault, target, opened)
                    report.transferred.append(vault_id)
                if vault_id in opened and actor is not None:
                    old_key, new_key = opened[vault_id]
                    self.app.vaults._rotate_without(db, work, actor, vault, member, old_key, new_key)
                    report.rotated.append(vault_id)
                    continue
                with self.app.integrity.changing(db, work, Domain.VAULTS, vault_id):
                    self.app.folders.forget_member(db, vault_id, user.id)  # rotation deferred: all folder keys
                    db.delete(member)
                if db.get(VaultRotationDue, vault_id) is None:
                    db.add(VaultRotationDue(vault_id=vault_id, since=now, reason="user_deleted"))
                report.deferred.append(vault_id)
                self.app.audit.append(
                    db,
                    work,
                    "member.removed",
                    actor=actor_id or "cli",
                    target=vault_id,
                    client_addr=client_addr,
                    member=user.id,
                    key_rotation="deferred",
                )
            report.sessions_revoked = self.app.sessions.revoke_user(db, work, user.id)
            db.execute(delete(LoginTicket).where(LoginTicket.user_id == user.id))
            db.execute(delete(OneTimeToken).where(OneTimeToken.user_id == user.id))
            db.execute(delete(RecoveryEscrow).where(RecoveryEscrow.user_id == user.id))
            requests = select(RecoveryRequest.id).where(RecoveryRequest.user_id == user.id)
            db.execute(delete(RecoveryRequestShare).where(RecoveryRequestShare.request_id.in_(requests)))
            db.execute(delete(RecoveryRequest).where(RecoveryRequest.user_id == user.id))
            with self.app.integrity.changing(db, work, Domain.USERS, user.id):
                row = db.get(User, user.id)
                if row is None:
                    raise NotFound("no such user")
                db.delete(row)
            self.app.audit.append(
                db,
                work,
                "user.deleted",
                actor=actor_id or "cli",
                target=user.id,
                client_addr=client_addr,
                email=user.email,
                vaults=report.vaults,
                rotated=len(report.rotated),
                rotation_deferred=len(report.deferred),
                transferred_to=target.id if target is not None and report.transferred else None,
                sessions_revoked=report.sessions_revoked,
            )
        return report

    def _transfer(
        self,
        db: Any,
        work: Work,
        actor: Principal | None,
        vault: Vault,
        target: User,
        opened: dict[str, tuple[Any, Any]],
    ) -> None:
        """Make ``target`` an administrator of ``vault`` (inside the write transaction)."""
        existing = db.get(VaultMember, (vault.id, target.id))
        with self.app.integrity.changing(db, work, Domain.VAULTS, vault.id) as change:
            if existing is not None:
                existing.role = "admin"
                return
            # Not a member: only reached when the vault is in ``opened``. The copy made
            # here is replaced by the rotation that follows (every member gets the new key).
            _, new_key = opened[vault.id]
            wrapped, mac = self.app.vaults._wrap_for(work, actor, new_key, vault.id, target, vault.key_version)
            row = VaultMember(
                vault_id=vault.id,
                user_id=target.id,
                role="admin",
                wrapped_key=wrapped,
                wrapped_key_mac=mac,
                key_version=vault.key_version,
                added_at=self.app.clock(),
            )
            db.add(row)
            change.add(MEMBER, row)

    # -- deferred rotations ------------------------------------------------------------

    def rotate_due(self, principal: Principal) -> int:
        """Rotate the keys of the vaults ``principal`` administers that a deletion
        marked (they hold the key and a session). Returns how many rotated."""
        with self.app.db.read() as db:
            due = list(
                db.execute(
                    select(VaultRotationDue.vault_id)
                    .join(VaultMember, VaultMember.vault_id == VaultRotationDue.vault_id)
                    .where(VaultMember.user_id == principal.user_id, VaultMember.role == "admin")
                ).scalars()
            )
        done = 0
        for vault_id in due:
            try:
                self._rotate_one(principal, vault_id)
                done += 1
            except (Conflict, NotFound):
                continue  # another administrator rotated it meanwhile, or the vault went
        return done

    @audits_integrity
    def _rotate_one(self, principal: Principal, vault_id: str) -> None:
        from appliance.vaults import Role

        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                mine = self.app.vaults.membership(db, principal, vault_id, Role.ADMIN, work)
            old_key = self.app.vaults.vault_key(work, principal, mine)
            new_key = work.new_data_key()
            with self.app.db.write() as db:
                self.app.vaults.lock(db, vault_id)
                if db.get(VaultRotationDue, vault_id) is None:
                    return
                self.app.vaults.membership(db, principal, vault_id, Role.ADMIN, work)
                vault = db.get(Vault, vault_id)
                vault = self.app.integrity.require(db, work, VAULT, vault, actor=principal.user_id) if vault else None
                if vault is None:
                    raise NotFound("no such vault")
                self.app.vaults._rotate_without(
                    db, work, principal, vault, None, old_key, new_key, event="vault.key_rotated"
                )


__all__ = ["Deletion", "Offboarding"]
