"""Rotating a vault key (member removal, a deferred rotation, on demand), folders
included: items under the vault key are re-sealed under the new one, and every
folder key the leaving member held (all of them on a rotation without a member
to remove) is rotated with its items, in the caller's transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from appliance.errors import Conflict
from appliance.folders.sealing import KeyRef, reseal_rows
from appliance.folders.tree import load_tree
from appliance.integrity import MEMBER, BrokenRow, Domain
from appliance.models import FolderKey, Item, ItemVersion, User, Vault, VaultMember, VaultRotationDue
from appliance.sessions import Principal
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance


def rotate_vault_without(
    app: Appliance,
    db: Any,
    work: Work,
    principal: Principal,
    vault: Vault,
    member: VaultMember | None,
    old_key: Any,
    new_key: Any,
    event: str = "member.removed",
) -> None:
    """Delete ``member`` (if any), re-encrypt what the vault key seals under
    ``new_key``, wrap it for the remaining members, and bring the folder keys in
    step (inside the caller's transaction and exclusive vault lock)."""
    vaults = app.vaults
    vault_id, user_id = vault.id, member.user_id if member is not None else None
    if member is not None and member.role == "admin" and vaults._admin_count(db, work, vault_id) <= 1:
        raise Conflict("the last administrator of a vault cannot be removed")
    mine = db.get(VaultMember, (vault_id, principal.user_id))
    if mine is None or mine.key_version != vault.key_version:
        raise Conflict("the vault key changed meanwhile; retry")
    new_version = vault.key_version + 1
    tree = load_tree(app, db, work, vault_id, new_version, actor=principal.user_id)
    ref = KeyRef(None, new_version)
    with app.integrity.changing(db, work, Domain.VAULTS, vault_id) as change:
        for model in (Item, ItemVersion):
            rows = db.execute(select(model).where(model.vault_id == vault_id, model.key_folder_id.is_(None))).scalars()
            try:
                reseal_rows(work, rows, lambda _: old_key, new_key, ref)
            except DecryptionFailed:
                raise BrokenRow("item", vault_id) from None
        held: frozenset[str] = frozenset()
        if member is not None:
            held = frozenset(
                db.execute(
                    select(FolderKey.folder_id).where(
                        FolderKey.vault_id == vault_id, FolderKey.user_id == member.user_id
                    )
                ).scalars()
            )
            app.folders.forget_member(db, vault_id, member.user_id)
            tree.roles.pop(member.user_id, None)
            tree.settings = {k: v for k, v in tree.settings.items() if k[1] != member.user_id}
            db.delete(member)
        db.execute(delete(VaultRotationDue).where(VaultRotationDue.vault_id == vault_id))
        db.flush()
        users = {
            u.id: u
            for u in db.execute(
                select(User).join(VaultMember, VaultMember.user_id == User.id).where(VaultMember.vault_id == vault_id)
            ).scalars()
        }
        for other in db.execute(select(VaultMember).where(VaultMember.vault_id == vault_id)).scalars():
            # Only a membership that verifies gets the new key: never a planted row.
            if app.integrity.require(db, work, MEMBER, other, actor=principal.user_id) is None:
                continue
            other.wrapped_key, other.wrapped_key_mac = vaults._wrap_for(
                work, principal, new_key, vault_id, users[other.user_id], new_version
            )
            other.key_version = new_version
        vault.key_version = new_version
        db.flush()
        resealed = app.folders.keys.reconcile(
            db, work, principal, tree, new_key, change, rotate_all=member is None, rotate=held
        )
    app.audit.by(
        principal,
        db,
        work,
        event,
        target=vault_id,
        member=user_id,
        key_version=new_version,
        folder_items_resealed=resealed,
    )
