"""The access settings vault administrators give members on folders (full, read,
none), and what each change does to the folder keys (``keys.reconcile``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.errors import Conflict, NotFound
from appliance.folders.access import Level, settings_digest
from appliance.folders.tree import load_tree
from appliance.integrity import FOLDER_ACCESS, Domain, audits_integrity
from appliance.models import Folder, FolderAccess, User, Vault, VaultMember
from appliance.sessions import Principal
from appliance.tokens import is_id

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.folders.keys import FolderKeys
    from appliance.folders.service import Place
    from hsm.keystore import Work


@dataclass(frozen=True)
class AccessView:
    user_id: str
    email: str
    role: str
    setting: str | None  # on this folder itself
    effective: str


class AccessSettings:
    """Mixed into ``Folders`` (which gives ``_locate`` and ``_admin``)."""

    app: Appliance
    keys: FolderKeys

    def _locate(self, db: Any, work: Work, principal: Principal, folder_id: str) -> tuple[Folder, Place]:
        raise NotImplementedError

    def _admin(self, place: Place) -> None:
        raise NotImplementedError

    # -- access settings (vault administrators) ----------------------------------------

    @audits_integrity
    def list_access(self, principal: Principal, folder_id: str) -> list[AccessView]:
        with self.app.keystore.work() as work, self.app.db.read() as db:
            row, place = self._locate(db, work, principal, folder_id)
            self._admin(place)
            tree = load_tree(self.app, db, work, row.vault_id, place.member.key_version, actor=principal.user_id)
            emails = dict(
                db.execute(
                    select(User.id, User.email)
                    .join(VaultMember, VaultMember.user_id == User.id)
                    .where(VaultMember.vault_id == row.vault_id)
                ).all()
            )
        out = [
            AccessView(
                user_id,
                emails.get(user_id, ""),
                role,
                s.wire if (s := tree.settings.get((folder_id, user_id))) is not None else None,
                tree.level(user_id, folder_id).wire,
            )
            for user_id, role in tree.roles.items()
        ]
        return sorted(out, key=lambda a: a.email)

    @audits_integrity
    def set_access(self, principal: Principal, folder_id: str, user_id: str, access: Any) -> AccessView:
        level = Level.parse(access)
        return self._change_access(principal, folder_id, user_id, level)

    @audits_integrity
    def clear_access(self, principal: Principal, folder_id: str, user_id: str) -> AccessView:
        return self._change_access(principal, folder_id, user_id, None)

    def _change_access(self, principal: Principal, folder_id: str, user_id: str, level: Level | None) -> AccessView:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            row = db.get(Folder, folder_id) if is_id(folder_id) else None
            if row is not None:
                self.app.vaults.lock(db, row.vault_id)
            row, place = self._locate(db, work, principal, folder_id)
            self._admin(place)
            vault = db.get(Vault, row.vault_id)
            tree = load_tree(self.app, db, work, row.vault_id, place.member.key_version, actor=principal.user_id)
            if not is_id(user_id) or user_id not in tree.roles:
                raise NotFound("no such member")
            if tree.roles[user_id] == "admin" and level is not None:
                raise Conflict("vault administrators always have full access")
            old = tree.settings.get((folder_id, user_id))
            vault_key = self.app.vaults.vault_key(work, principal, place.member)
            existing = db.get(FolderAccess, (folder_id, user_id))
            with self.app.integrity.changing(db, work, Domain.VAULTS, row.vault_id) as change:
                if level is None:
                    if existing is not None:
                        db.delete(existing)
                    tree.settings.pop((folder_id, user_id), None)
                elif existing is not None and old is not None:
                    existing.access = level.wire
                    existing.set_at, existing.set_by = self.app.clock(), principal.user_id
                    tree.settings[(folder_id, user_id)] = level
                else:
                    if existing is not None:  # a row that did not verify: never blessed
                        db.delete(existing)
                        db.flush()
                    fresh = FolderAccess(
                        folder_id=folder_id,
                        user_id=user_id,
                        vault_id=row.vault_id,
                        access=level.wire,
                        set_at=self.app.clock(),
                        set_by=principal.user_id,
                    )
                    db.add(fresh)
                    change.add(FOLDER_ACCESS, fresh)
                    tree.settings[(folder_id, user_id)] = level
                row.settings_digest = settings_digest(tree.settings_of(folder_id))
                db.flush()
                resealed = self.keys.reconcile(db, work, principal, tree, vault_key, change)
            assert vault is not None
            node = tree.nodes[folder_id]
            self.app.audit.by(
                principal,
                db,
                work,
                "folder.access_set" if level is not None else "folder.access_cleared",
                target=folder_id,
                vault=row.vault_id,
                member=user_id,
                old=old.wire if old is not None else None,
                new=level.wire if level is not None else None,
                key_version=node.key_version if node.keyed else None,
                resealed=resealed,
            )
            email = db.execute(select(User.email).where(User.id == user_id)).scalar_one_or_none() or ""
            return AccessView(
                user_id,
                email,
                tree.roles[user_id],
                level.wire if level is not None else None,
                tree.level(user_id, folder_id).wire,
            )
