"""Folders of a vault: the tree, who may see and change what, and the settings
vault administrators give members. Every check lives here; keys in ``keys.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from appliance.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.files.models import StoredFile
from appliance.folders.access import MAX_DEPTH, Level, Tree, settings_digest
from appliance.folders.keys import FolderKeys
from appliance.folders.sealing import KeyRef
from appliance.folders.settings import AccessSettings
from appliance.folders.tree import load_tree
from appliance.integrity import FOLDER, Domain, audits_integrity
from appliance.models import Folder, FolderAccess, FolderKey, Item, VaultMember
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

UNSET: Any = object()
NO_FOLDER = "no such folder"


@dataclass(frozen=True)
class FolderView:
    id: str
    vault_id: str
    name: str
    parent_id: str | None  # the nearest ancestor the caller may see
    access: str
    depth: int
    item_count: int


@dataclass(frozen=True)
class Place:
    """Where an item is (or goes), as the caller may use it."""

    tree: Tree
    member: VaultMember
    folder_id: str | None
    level: Level
    ref: KeyRef


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationFailed("name must be 1 to 200 characters")
    return name.strip()


def _check_parent(parent_id: Any) -> str | None:
    if parent_id is not None and not isinstance(parent_id, str):
        raise ValidationFailed("parent_id must be a folder id or null")
    return parent_id  # type: ignore[no-any-return]


class Folders(AccessSettings):
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.keys = FolderKeys(app)

    # -- used by items ------------------------------------------------------------

    def place(
        self, db: Any, work: Work, principal: Principal, member: VaultMember, folder_id: Any, missing: str
    ) -> Place:
        """The caller's level and the sealing key in ``folder_id`` (None: the root);
        NotFound(``missing``) when the folder is unknown or invisible to them."""
        if folder_id is not None and not (isinstance(folder_id, str) and is_id(folder_id)):
            raise NotFound(missing)
        tree = load_tree(
            self.app, db, work, member.vault_id, member.key_version, actor=principal.user_id, member=member
        )
        if folder_id is not None and folder_id not in tree.nodes:
            raise NotFound(missing)
        level = tree.level(principal.user_id, folder_id)
        if level is Level.NONE:
            raise NotFound(missing)
        return Place(tree, member, folder_id, level, tree.key_ref(folder_id))

    def key(self, db: Any, work: Work, principal: Principal, member: VaultMember, ref: KeyRef) -> Any:
        return self.keys.key(db, work, principal, ref, lambda: self.app.vaults.vault_key(work, principal, member))

    # -- finding a folder ---------------------------------------------------------

    def _locate(self, db: Any, work: Work, principal: Principal, folder_id: str) -> tuple[Folder, Place]:
        row = db.get(Folder, folder_id) if is_id(folder_id) else None
        if row is None:
            raise NotFound(NO_FOLDER)
        member = db.get(VaultMember, (row.vault_id, principal.user_id))
        if member is None:
            raise NotFound(NO_FOLDER)
        try:
            member = self.app.vaults.checked_membership(db, principal, member, _read_role(), work)
        except NotFound:
            raise NotFound(NO_FOLDER) from None
        return row, self.place(db, work, principal, member, folder_id, NO_FOLDER)

    def _admin(self, place: Place) -> None:
        if place.member.role != "admin":
            raise Forbidden("only vault administrators manage folder access")

    @audits_integrity
    def vault_of(self, principal: Principal, folder_id: str) -> str:
        """The vault of a folder the caller may see (NotFound otherwise)."""
        with self.app.keystore.work() as work, self.app.db.read() as db:
            row, _ = self._locate(db, work, principal, folder_id)
            return row.vault_id

    # -- the tree -----------------------------------------------------------------

    @audits_integrity
    def create(self, principal: Principal, vault_id: str, name: Any, parent_id: Any = None) -> FolderView:
        name = _check_name(name)
        parent_id = _check_parent(parent_id)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            self.app.vaults.lock(db, vault_id, exclusive=False)
            member = self.app.vaults.membership(db, principal, vault_id, _read_role(), work)
            place = self.place(db, work, principal, member, parent_id, NO_FOLDER)
            if place.level < Level.FULL:
                raise Forbidden("this needs full access where the folder goes")
            depth = place.tree.depth(parent_id) + 1
            if depth > MAX_DEPTH:
                raise ValidationFailed(f"folders nest at most {MAX_DEPTH} levels deep")
            row = Folder(
                id=new_id(),
                vault_id=vault_id,
                parent_id=parent_id,
                name=name,
                keyed=False,
                key_version=0,
                created_at=self.app.clock(),
                created_by=principal.user_id,
            )
            self.app.integrity.seal_new(db, work, FOLDER, row)
            db.add(row)
            self.app.audit.by(principal, db, work, "folder.created", target=row.id, vault=vault_id, parent=parent_id)
            return FolderView(row.id, vault_id, name, parent_id, place.level.wire, depth, 0)

    @audits_integrity
    def list_folders(self, principal: Principal, vault_id: str) -> list[FolderView]:
        """The folders the caller may see, parents before children; a folder under
        one they may not see hangs from the nearest one they may (or the root)."""
        with self.app.keystore.work() as work, self.app.db.read() as db:
            member = self.app.vaults.membership(db, principal, vault_id, _read_role(), work)
            tree = load_tree(self.app, db, work, vault_id, member.key_version, actor=principal.user_id, member=member)
            counts = dict(
                db.execute(
                    select(Item.folder_id, func.count()).where(Item.vault_id == vault_id).group_by(Item.folder_id)
                ).all()
            )
        return self._visible(tree, principal.user_id, counts)

    @staticmethod
    def _visible(tree: Tree, user_id: str, counts: dict[str | None, int]) -> list[FolderView]:
        levels = tree.levels(user_id)
        kids = tree.children()
        out: list[FolderView] = []

        def walk(parent: str | None, shown_parent: str | None, depth: int) -> None:
            for fid in kids.get(parent, []):
                if levels[fid] >= Level.READ:
                    node = tree.nodes[fid]
                    out.append(
                        FolderView(
                            fid, tree.vault_id, node.name, shown_parent, levels[fid].wire, depth + 1, counts.get(fid, 0)
                        )
                    )
                    walk(fid, fid, depth + 1)
                else:
                    walk(fid, shown_parent, depth)

        walk(None, None, 0)
        return out

    @audits_integrity
    def update(self, principal: Principal, folder_id: str, name: Any = UNSET, parent_id: Any = UNSET) -> FolderView:
        """Rename (full access) and/or move within the vault (vault administrators:
        a move changes what the folder inherits, so who may read it)."""
        if name is not UNSET:
            name = _check_name(name)
        if parent_id is not UNSET:
            parent_id = _check_parent(parent_id)
        with self.app.keystore.work() as work, self.app.db.write() as db:
            row = db.get(Folder, folder_id) if is_id(folder_id) else None
            if row is not None:
                self.app.vaults.lock(db, row.vault_id)
            row, place = self._locate(db, work, principal, folder_id)
            if place.level < Level.FULL:
                raise Forbidden("this needs full access to the folder")
            tree = place.tree
            if parent_id is not UNSET and parent_id != row.parent_id:
                self._admin(place)
                self._move(db, work, principal, row, place, parent_id)
            if name is not UNSET:
                row.name = name
                tree.nodes[row.id].name = name
            self.app.audit.by(
                principal,
                db,
                work,
                "folder.updated",
                target=row.id,
                vault=row.vault_id,
                renamed=name is not UNSET,
                parent=row.parent_id,
            )
            views = {v.id: v for v in self._visible(tree, principal.user_id, self._counts(db, row.vault_id))}
            return views[row.id]

    def _move(self, db: Any, work: Work, principal: Principal, row: Folder, place: Place, parent_id: Any) -> None:
        tree = place.tree
        if parent_id is not None and parent_id not in tree.nodes:
            raise NotFound(NO_FOLDER)
        if parent_id is not None and tree.is_under(parent_id, row.id):
            raise ValidationFailed("a folder cannot move into itself or one of its subfolders")
        if tree.depth(parent_id) + tree.subtree_height(row.id) > MAX_DEPTH:
            raise ValidationFailed(f"folders nest at most {MAX_DEPTH} levels deep")
        full = load_tree(self.app, db, work, row.vault_id, place.member.key_version, actor=principal.user_id)
        vault_key = self.app.vaults.vault_key(work, principal, place.member)
        with self.app.integrity.changing(db, work, Domain.VAULTS, row.vault_id) as change:
            row.parent_id = parent_id
            full.nodes[row.id].parent_id = parent_id
            tree.nodes[row.id].parent_id = parent_id
            self.keys.reconcile(db, work, principal, full, vault_key, change)

    @staticmethod
    def _counts(db: Any, vault_id: str) -> dict[str | None, int]:
        return dict(
            db.execute(
                select(Item.folder_id, func.count()).where(Item.vault_id == vault_id).group_by(Item.folder_id)
            ).all()
        )

    @audits_integrity
    def delete(self, principal: Principal, folder_id: str) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            row = db.get(Folder, folder_id) if is_id(folder_id) else None
            if row is not None:
                self.app.vaults.lock(db, row.vault_id)
            row, place = self._locate(db, work, principal, folder_id)
            if place.level < Level.FULL:
                raise Forbidden("this needs full access to the folder")
            busy = (
                db.execute(select(Folder.id).where(Folder.parent_id == row.id).limit(1)).first()
                or db.execute(select(Item.id).where(Item.folder_id == row.id).limit(1)).first()
                or db.execute(select(StoredFile.id).where(StoredFile.folder_id == row.id).limit(1)).first()
            )
            if busy is not None:
                raise Conflict("only an empty folder can be deleted (move or delete what is in it first)")
            with self.app.integrity.changing(db, work, Domain.VAULTS, row.vault_id):
                for model in (FolderAccess, FolderKey):
                    for other in db.execute(select(model).where(model.folder_id == row.id)).scalars():
                        db.delete(other)
                db.flush()
                db.delete(row)
            self.app.audit.by(principal, db, work, "folder.deleted", target=folder_id, vault=row.vault_id)

    # -- membership changes (called by appliance/vaults.py) -----------------------------

    def full_tree(self, db: Any, work: Work, principal: Principal, vault_id: str, vault_version: int) -> Tree:
        return load_tree(self.app, db, work, vault_id, vault_version, actor=principal.user_id)

    def after_member_change(self, db: Any, work: Work, principal: Principal, tree: Tree, change: Any | None) -> int:
        """A member was added or re-roled (``tree`` already says so): wrap or rotate
        folder keys to match. ``principal`` is a vault administrator."""
        if not tree.settings and not any(n.keyed for n in tree.nodes.values()):
            return 0
        mine = db.get(VaultMember, (tree.vault_id, principal.user_id))
        vault_key = self.app.vaults.vault_key(work, principal, mine)
        return self.keys.reconcile(db, work, principal, tree, vault_key, change)

    @staticmethod
    def forget_member(db: Any, vault_id: str, user_id: str) -> None:
        """Delete a leaving member's settings and key copies (inside the caller's
        anchor change block for the vault)."""
        touched: set[str] = set()
        for model in (FolderAccess, FolderKey):
            for row in db.execute(select(model).where(model.vault_id == vault_id, model.user_id == user_id)).scalars():
                if model is FolderAccess:
                    touched.add(row.folder_id)
                db.delete(row)
        db.flush()
        for folder_id in sorted(touched):
            left = db.execute(select(FolderAccess).where(FolderAccess.folder_id == folder_id)).scalars()
            folder = db.get(Folder, folder_id)
            if folder is not None:
                folder.settings_digest = settings_digest({a.user_id: Level[a.access.upper()] for a in left})
        db.flush()


def _read_role() -> Any:
    from appliance.vaults import Role

    return Role.READ
