"""File keys follow the keys above them: a vault key rotation re-wraps the data
keys of files under the vault key; a folder key change (access set or cleared, a
folder moved, a member removed) re-wraps those of the folder's files. The content,
sealed under the data keys, is never rewritten."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.files import crypto
from appliance.files.models import FileVersion, StoredFile
from appliance.folders.sealing import KeyRef

if TYPE_CHECKING:
    from appliance.core import Appliance
    from hsm.keystore import Work


def _rewrap(work: Work, v: FileVersion, old_key: Any, new_key: Any, target: KeyRef) -> None:
    """Raises DecryptionFailed when the stored blobs are not this version's."""
    data_key = crypto.unwrap(
        work,
        old_key,
        v.wrapped_key,
        crypto.key_context(v.vault_id, v.file_id, v.version, v.key_version, v.key_folder_id),
    )
    meta = work.decrypt_field(
        old_key, v.meta_ct, crypto.meta_context(v.vault_id, v.file_id, v.version, v.key_version, v.key_folder_id)
    )
    v.wrapped_key = crypto.wrap(
        work, new_key, data_key, crypto.key_context(v.vault_id, v.file_id, v.version, target.version, target.folder_id)
    )
    v.meta_ct = work.encrypt_field(
        new_key, meta, crypto.meta_context(v.vault_id, v.file_id, v.version, target.version, target.folder_id)
    )
    v.key_folder_id, v.key_version = target.folder_id, target.version


def rewrap_vault(
    app: Appliance, db: Any, work: Work, vault_id: str, old_key: Any, new_key: Any, new_version: int
) -> int:
    count = 0
    rows = db.execute(
        select(FileVersion).where(
            FileVersion.vault_id == vault_id,
            FileVersion.key_folder_id.is_(None),
            FileVersion.key_version == new_version - 1,
        )
    ).scalars()
    for v in rows:
        _rewrap(work, v, old_key, new_key, KeyRef(None, new_version))
        count += 1
    app.deposits.rewrap_vault(db, work, vault_id, old_key, new_key, new_version)
    return count


def reseal_for_tree(
    db: Any, work: Work, tree: Any, old_key: Callable[[KeyRef], Any], new_keys: dict[str, Any], vault_key: Any
) -> int:
    """Inside the folders' reconcile: every file version whose key is not the one the
    tree now gives its folder moves to that key. Versions under the vault key stay for
    ``rewrap_vault`` when only the vault key's version differs (a rotation in progress)."""
    count = 0
    rows = db.execute(
        select(FileVersion, StoredFile.folder_id)
        .join(StoredFile, StoredFile.id == FileVersion.file_id)
        .where(FileVersion.vault_id == tree.vault_id)
    ).all()
    for v, folder_id in rows:
        target = tree.key_ref(folder_id)
        if v.key_folder_id == target.folder_id and (v.key_version == target.version or target.folder_id is None):
            continue
        new = vault_key if target.folder_id is None else new_keys.get(target.folder_id)
        if new is None:
            new = old_key(target)
        _rewrap(work, v, old_key(KeyRef(v.key_folder_id, v.key_version)), new, target)
        count += 1
    db.flush()
    return count


def files_under(db: Any, vault_id: str, ref: KeyRef) -> bool:
    found = db.execute(
        select(FileVersion.file_id)
        .where(FileVersion.vault_id == vault_id, FileVersion.key_folder_id == ref.folder_id)
        .limit(1)
    ).first()
    return found is not None
