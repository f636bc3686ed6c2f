"""Loading a vault's folder tree from the database, every row's MAC checked."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.folders.access import Level, Node, Tree, settings_digest
from appliance.integrity import FOLDER, FOLDER_ACCESS, MEMBER, BrokenRow
from appliance.models import Folder, FolderAccess, VaultMember
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance


def load_tree(
    app: Appliance,
    db: Any,
    work: Work,
    vault_id: str,
    vault_version: int,
    *,
    actor: str | None,
    member: VaultMember | None = None,
) -> Tree:
    """The vault's tree. With ``member`` (a verified membership): that member's
    settings and role only (what a request needs); else every member's."""
    integrity = app.integrity
    tree = Tree(vault_id, vault_version)
    folders = db.execute(select(Folder).where(Folder.vault_id == vault_id)).scalars().all()
    for f in integrity.verified(db, work, FOLDER, folders, actor=actor):
        tree.nodes[f.id] = Node(f.id, f.parent_id, f.name, bool(f.keyed), int(f.key_version))
    if member is not None:
        tree.roles[member.user_id] = member.role
    else:
        rows = db.execute(select(VaultMember).where(VaultMember.vault_id == vault_id)).scalars().all()
        for m in integrity.verified(db, work, MEMBER, rows, actor=actor):
            tree.roles[m.user_id] = m.role
    # Every setting of the vault (not only the caller's): each folder's digest covers them all.
    query = select(FolderAccess).where(FolderAccess.vault_id == vault_id)
    for a in integrity.verified(db, work, FOLDER_ACCESS, db.execute(query).scalars().all(), actor=actor):
        if a.folder_id in tree.nodes:
            tree.settings[(a.folder_id, a.user_id)] = Level[a.access.upper()]
    for f in folders:
        if f.id in tree.nodes and not hmac.compare_digest(
            settings_digest(tree.settings_of(f.id)), f.settings_digest or ""
        ):
            raise BrokenRow("folder_access", f.id, actor)
    # A folder whose parent did not verify hangs nowhere: drop it and what is under it.
    for fid in list(tree.nodes):
        parent = tree.nodes[fid].parent_id
        if parent is not None and parent not in tree.nodes:
            _drop(tree, fid)
    return tree


def _drop(tree: Tree, folder_id: str) -> None:
    if tree.nodes.pop(folder_id, None) is None:
        return
    for child in [n.id for n in tree.nodes.values() if n.parent_id == folder_id]:
        _drop(tree, child)


def parents_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Folder rows (``id``, ``parent_id``) ordered so that a parent comes before
    its children (backups restore them in this order under the foreign key)."""
    by_parent: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        by_parent.setdefault(row["parent_id"], []).append(row)
    ids = {row["id"] for row in rows}
    out: list[dict[str, Any]] = []
    queue = [row for row in rows if row["parent_id"] is None or row["parent_id"] not in ids]
    while queue:
        row = queue.pop(0)
        out.append(row)
        queue.extend(by_parent.get(row["id"], []))
    return out
