"""Vaults, their members and roles, and the vault key each member holds.

Every check of who may do what lives here, not in the web layer.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from appliance.bindings import bind_member_key, member_key_is_bound, public_key_is_bound
from appliance.errors import Conflict, Forbidden, IntegrityFailure, NotFound, ValidationFailed
from appliance.integrity import MEMBER, VAULT, BrokenRow, Domain, audits_integrity
from appliance.models import Item, User, Vault, VaultMember
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance


class BrokenBinding(BrokenRow):
    """A stored key or ciphertext failed its check; ``what``/``target`` go to the audit log."""


class Role(enum.IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: Any) -> Role:
        if not isinstance(value, str) or value.upper() not in cls.__members__:
            raise ValidationFailed("role must be one of: admin, write, read")
        return cls[value.upper()]

    @property
    def wire(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class VaultView:
    id: str
    name: str
    role: str


@dataclass(frozen=True)
class MemberView:
    vault_id: str
    user_id: str
    email: str
    role: str


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationFailed("name must be 1 to 200 characters")
    return name.strip()


class Vaults:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- access -------------------------------------------------------------------

    def membership(
        self, db: Any, principal: Principal, vault_id: str, at_least: Role, work: Work | None = None
    ) -> VaultMember:
        """The caller's membership, or NotFound (not a member: existence stays
        hidden) / Forbidden (a member whose role is too low). The row's MAC, anchored
        in the token, is checked: a forged, edited or restored membership is refused."""
        member: VaultMember | None = db.get(VaultMember, (vault_id, principal.user_id)) if is_id(vault_id) else None
        if member is None:
            raise NotFound("no such vault")
        checked: VaultMember = self.checked_membership(db, principal, member, at_least, work)
        return checked

    def checked_membership(
        self, db: Any, principal: Principal, member: Any, at_least: Role, work: Work | None = None
    ) -> Any:
        if work is None:
            with self.app.keystore.work() as own:
                checked = self.app.integrity.require(
                    db, own, MEMBER, member, actor=principal.user_id, client_addr=principal.client_addr
                )
        else:
            checked = self.app.integrity.require(
                db, work, MEMBER, member, actor=principal.user_id, client_addr=principal.client_addr
            )
        if checked is None:
            raise NotFound("no such vault")
        self.check_role(checked, at_least)
        return checked

    @staticmethod
    def check_role(member: VaultMember, at_least: Role) -> None:
        if Role[member.role.upper()] < at_least:
            raise Forbidden(f"this needs the {at_least.wire} role on the vault")

    def vault_key(self, work: Work, principal: Principal, member: VaultMember, extractable: bool = False) -> Any:
        """The vault key inside the token, unwrapped with the caller's private key.

        The copy used to read and write items is not extractable (and is the one
        cached); an extractable copy is made only to wrap the key for a new member,
        used once and destroyed with the unit of work."""
        cache = self.app.keystore.cache
        digest = hashlib.sha256(member.wrapped_key + (member.wrapped_key_mac or "").encode()).digest()
        key = principal.cache_prefix + b"|vault|" + member.vault_id.encode() + b"|" + digest
        handle = None if extractable else cache.get(key, work.generation)
        if handle is not None:
            return handle
        if not member_key_is_bound(
            work, member.vault_id, member.user_id, member.key_version, member.wrapped_key, member.wrapped_key_mac
        ):
            self._integrity_event(work, principal, "vault_key", member.vault_id)
            raise IntegrityFailure()
        private = self.app.sessions.private_key(work, principal)
        try:
            handle = work.unwrap_with_private_key(private, member.wrapped_key, extractable=extractable)
        except DecryptionFailed:
            self._integrity_event(work, principal, "vault_key", member.vault_id)
            raise IntegrityFailure() from None
        if not extractable:
            cache.put(key, work.keep(handle), work.generation)
        return handle

    def _wrap_for(
        self, work: Work, principal: Principal | None, key: Any, vault_id: str, user: User, key_version: int
    ) -> tuple[bytes, str]:
        """Wrap a vault key for ``user``, whose public key must be bound to them."""
        if user.public_key is None or not public_key_is_bound(work, user.id, user.public_key, user.public_key_mac):
            raise BrokenBinding("public_key_binding", user.id)
        wrapped = work.wrap_for_public_key(key, user.public_key)
        return wrapped, bind_member_key(work, vault_id, user.id, key_version, wrapped)

    def _integrity_event(self, work: Work, principal: Principal, what: str, target: str) -> None:
        with self.app.db.write() as db:
            self.app.audit.by(
                principal,
                db,
                work,
                "integrity.failed",
                target=target,
                what=what,
            )

    @staticmethod
    def lock(db: Any, vault_id: str, exclusive: bool = True) -> None:
        """Serialize changes to one vault across nodes: a row lock on PostgreSQL
        (SQLite write transactions are already serialized by BEGIN IMMEDIATE).

        Member changes and key rotation take it exclusively; item creation takes
        it shared, so that no item can be sealed under a key being retired.
        """
        if not is_id(vault_id):
            raise NotFound("no such vault")
        db.execute(select(Vault.id).where(Vault.id == vault_id).with_for_update(read=not exclusive))

    # -- vaults -------------------------------------------------------------------

    @audits_integrity
    def create(self, principal: Principal, name: Any) -> VaultView:
        name = _check_name(name)
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                me = db.get(User, principal.user_id)
            if me is None or me.public_key is None:
                raise NotFound("no such user")
            key = work.new_data_key()
            vault = Vault(id=new_id(), name=name, key_version=1, created_at=self.app.clock(), created_by=me.id)
            wrapped, wrapped_mac = self._wrap_for(work, principal, key, vault.id, me, 1)
            now = vault.created_at
            member = VaultMember(
                vault_id=vault.id,
                user_id=me.id,
                role="admin",
                wrapped_key=wrapped,
                wrapped_key_mac=wrapped_mac,
                key_version=1,
                added_at=now,
            )
            with self.app.db.write() as db:
                self.app.integrity.seal_new(db, work, VAULT, vault)
                self.app.integrity.seal_new(db, work, MEMBER, member)
                db.add(vault)
                db.flush()
                db.add(member)
                self.app.audit.append(
                    db, work, "vault.created", actor=me.id, target=vault.id, client_addr=principal.client_addr
                )
        return VaultView(vault.id, vault.name, "admin")

    def list_vaults(self, principal: Principal) -> list[VaultView]:
        with self.app.db.read() as db:
            rows = db.execute(
                select(Vault, VaultMember.role)
                .join(VaultMember, VaultMember.vault_id == Vault.id)
                .where(VaultMember.user_id == principal.user_id)
                .order_by(Vault.name, Vault.id)
            ).all()
        # Keys a user deletion or an operator left to rotate; their `vault` key jobs end.
        if any(role == "admin" for _, role in rows) and self.app.offboarding.rotate_due(principal):
            self.app.keyops.refresh_vault_jobs()
        return [VaultView(v.id, v.name, role) for v, role in rows]

    @audits_integrity
    def get(self, principal: Principal, vault_id: str) -> VaultView:
        with self.app.db.read() as db:
            member = self.membership(db, principal, vault_id, Role.READ)
            vault = db.get(Vault, vault_id)
        assert vault is not None
        return VaultView(vault.id, vault.name, member.role)

    @audits_integrity
    def rename(self, principal: Principal, vault_id: str, name: Any) -> VaultView:
        name = _check_name(name)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.lock(db, vault_id)
            self.membership(db, principal, vault_id, Role.ADMIN, work)
            vault = db.get(Vault, vault_id)
            assert vault is not None
            vault.name = name
            self.app.audit.by(
                principal,
                db,
                work,
                "vault.renamed",
                target=vault_id,
            )
            return VaultView(vault.id, vault.name, "admin")

    @audits_integrity
    def delete(self, principal: Principal, vault_id: str) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.lock(db, vault_id)
            self.membership(db, principal, vault_id, Role.ADMIN, work)
            # Items first (their ciphertexts), then every wrapped vault key, then the vault.
            with self.app.integrity.changing(db, work, Domain.VAULTS, vault_id):
                db.execute(delete(Item).where(Item.vault_id == vault_id))
                db.execute(delete(VaultMember).where(VaultMember.vault_id == vault_id))
                db.execute(delete(Vault).where(Vault.id == vault_id))
            self.app.audit.by(
                principal,
                db,
                work,
                "vault.deleted",
                target=vault_id,
            )

    # -- members ------------------------------------------------------------------

    @audits_integrity
    def members(self, principal: Principal, vault_id: str) -> list[MemberView]:
        with self.app.db.read() as db:
            self.membership(db, principal, vault_id, Role.READ)
            rows = db.execute(
                select(VaultMember, User.email)
                .join(User, User.id == VaultMember.user_id)
                .where(VaultMember.vault_id == vault_id)
                .order_by(User.email)
            ).all()
        return [MemberView(vault_id, m.user_id, email, m.role) for m, email in rows]

    @audits_integrity
    def add_member(self, principal: Principal, vault_id: str, email: Any, role: Any) -> MemberView:
        wanted = Role.parse(role)
        if not isinstance(email, str):
            raise ValidationFailed("email must be a string")
        from appliance.accounts import normalize_email

        email = normalize_email(email)
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                mine = self.membership(db, principal, vault_id, Role.ADMIN, work)
                target = db.execute(select(User).where(User.email == email)).scalar_one_or_none()
                # One answer for "no such user", "not enrolled yet" and "disabled":
                # any user can create a vault, so this must not enumerate accounts.
                if target is None or target.status != "active" or target.public_key is None:
                    raise NotFound("no enrolled, active user with this e-mail address")
                if db.get(VaultMember, (vault_id, target.id)) is not None:
                    raise Conflict("this user is already a member of the vault")
            key = self.vault_key(work, principal, mine, extractable=True)
            wrapped, wrapped_mac = self._wrap_for(work, principal, key, vault_id, target, mine.key_version)
            with self.app.db.write() as db:
                self.lock(db, vault_id)
                current = self.membership(db, principal, vault_id, Role.ADMIN, work)
                if current.key_version != mine.key_version:
                    raise Conflict("the vault key changed meanwhile; retry")
                new_member = VaultMember(
                    vault_id=vault_id,
                    user_id=target.id,
                    role=wanted.wire,
                    wrapped_key=wrapped,
                    wrapped_key_mac=wrapped_mac,
                    key_version=mine.key_version,
                    added_at=self.app.clock(),
                )
                self.app.integrity.seal_new(db, work, MEMBER, new_member)
                db.add(new_member)
                db.flush()
                tree = self.app.folders.full_tree(db, work, principal, vault_id, mine.key_version)
                self.app.folders.after_member_change(db, work, principal, tree, None)
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "member.added",
                    target=vault_id,
                    member=target.id,
                    role=wanted.wire,
                )
        return MemberView(vault_id, target.id, target.email, wanted.wire)

    @audits_integrity
    def change_role(self, principal: Principal, vault_id: str, user_id: str, role: Any) -> MemberView:
        wanted = Role.parse(role)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.lock(db, vault_id)
            self.membership(db, principal, vault_id, Role.ADMIN, work)
            member = db.get(VaultMember, (vault_id, user_id)) if is_id(user_id) else None
            if member is None:
                raise NotFound("no such member")
            member = self.checked_membership(db, principal, member, Role.READ, work)
            if member.role == "admin" and wanted is not Role.ADMIN and self._admin_count(db, work, vault_id) <= 1:
                raise Conflict("the last administrator of a vault cannot be demoted")
            old = member.role
            tree = self.app.folders.full_tree(db, work, principal, vault_id, member.key_version)
            with self.app.integrity.changing(db, work, Domain.VAULTS, vault_id) as change:
                member.role = tree.roles[user_id] = wanted.wire
                self.app.folders.after_member_change(db, work, principal, tree, change)
            user = db.get(User, user_id)
            self.app.audit.by(
                principal,
                db,
                work,
                "member.changed",
                target=vault_id,
                member=user_id,
                old=old,
                new=wanted.wire,
            )
            return MemberView(vault_id, user_id, user.email if user else "", wanted.wire)

    @audits_integrity
    def remove_member(self, principal: Principal, vault_id: str, user_id: str) -> None:
        """Remove a member and rotate the vault key: every item is re-encrypted under
        a new key, wrapped for the remaining members only, in one transaction. The
        vaults anchor moves: the removed member's row cannot come back from an
        older copy of the database."""
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                mine = self.membership(db, principal, vault_id, Role.ADMIN, work)
            old_key = self.vault_key(work, principal, mine, extractable=False)
            new_key = work.new_data_key()
            with self.app.db.write() as db:
                self.lock(db, vault_id)
                mine = self.membership(db, principal, vault_id, Role.ADMIN, work)
                vault = db.get(Vault, vault_id)
                member = db.get(VaultMember, (vault_id, user_id)) if is_id(user_id) else None
                if vault is None or member is None:
                    raise NotFound("no such member")
                vault = self.app.integrity.require(db, work, VAULT, vault, actor=principal.user_id)
                if vault is None:
                    raise NotFound("no such member")
                self._rotate_without(db, work, principal, vault, member, old_key, new_key)

    @audits_integrity
    def rotate_key(self, principal: Principal, vault_id: str) -> int:
        """Rotate the vault key on demand (a vault administrator): every item is
        re-encrypted under a new key wrapped for every member, in one transaction, as
        member removal does. Returns how many items were re-encrypted."""
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                mine = self.membership(db, principal, vault_id, Role.ADMIN, work)
            old_key = self.vault_key(work, principal, mine, extractable=False)
            new_key = work.new_data_key()
            with self.app.db.write() as db:
                self.lock(db, vault_id)
                self.membership(db, principal, vault_id, Role.ADMIN, work)
                vault = db.get(Vault, vault_id)
                vault = self.app.integrity.require(db, work, VAULT, vault, actor=principal.user_id) if vault else None
                if vault is None:
                    raise NotFound("no such vault")
                count = db.execute(select(func.count()).where(Item.vault_id == vault_id)).scalar_one()
                self._rotate_without(db, work, principal, vault, None, old_key, new_key, event="vault.key_rotated")
                return int(count)

    def _rotate_without(
        self,
        db: Any,
        work: Work,
        principal: Principal,
        vault: Vault,
        member: VaultMember | None,
        old_key: Any,
        new_key: Any,
        event: str = "member.removed",
    ) -> None:
        """Delete ``member`` (if any) and rotate the vault key (appliance/folders/rotation.py)."""
        from appliance.folders.rotation import rotate_vault_without

        rotate_vault_without(self.app, db, work, principal, vault, member, old_key, new_key, event)
        try:  # file data keys are re-wrapped under the new vault key; file content is not touched
            self.app.files.rewrap_vault(db, work, vault.id, old_key, new_key, vault.key_version)
        except DecryptionFailed:
            raise BrokenBinding("file_key", vault.id) from None

    def _admin_count(self, db: Any, work: Work, vault_id: str) -> int:
        """Administrators whose membership verifies (a planted admin row does not
        let the real last one leave)."""
        rows = db.execute(
            select(VaultMember).where(VaultMember.vault_id == vault_id, VaultMember.role == "admin")
        ).scalars()
        return sum(1 for m in rows if self.app.integrity.valid(work, MEMBER, m))
