"""Keeping an item's previous version when it is updated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from appliance.folders.sealing import FIELDS
from appliance.models import Item, ItemVersion

if TYPE_CHECKING:
    from appliance.core import Appliance


def archive(app: Appliance, db: Any, item: Item) -> None:
    """Copy the live version's ciphertexts (sealed for that version number, so
    they open only as that version of that item) into history, then keep only the
    newest ``[items] history_versions`` of them. Inside the updating transaction."""
    keep = app.settings.items.history_versions
    if keep <= 0:
        db.execute(delete(ItemVersion).where(ItemVersion.item_id == item.id))
        return
    db.add(
        ItemVersion(
            item_id=item.id,
            version=item.version,
            vault_id=item.vault_id,
            folder_id=item.folder_id,
            key_folder_id=item.key_folder_id,
            key_version=item.key_version,
            changed_by=item.updated_by,
            changed_at=item.updated_at,
            **{f"{name}_ct": getattr(item, f"{name}_ct") for name in FIELDS},
        )
    )
    db.flush()
    versions = list(
        db.execute(
            select(ItemVersion.version).where(ItemVersion.item_id == item.id).order_by(ItemVersion.version.desc())
        ).scalars()
    )
    if len(versions) > keep:
        db.execute(delete(ItemVersion).where(ItemVersion.item_id == item.id, ItemVersion.version <= versions[keep]))
