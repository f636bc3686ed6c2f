"""How item fields are sealed: AES-256-GCM in the token, under the key of the
nearest keyed folder at or above the item (or the vault key), with associated
data naming vault, folder, key holder, item, field, item version and key version.

A ciphertext moved to another item, field, version, folder or key fails to open.
Items at the vault root under the vault key keep the first layout (``v1``, which
names no folder: the root), so items sealed before folders existed still open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hsm.keystore import Work

FIELDS = ("title", "username", "password", "url", "notes", "totp")


@dataclass(frozen=True)
class KeyRef:
    """Which key seals an item: a keyed folder's (``folder_id``) or the vault's
    (``folder_id`` None), at ``version``."""

    folder_id: str | None
    version: int


def field_context(
    vault_id: str,
    item_id: str,
    field: str,
    version: int,
    key_version: int,
    folder_id: str | None = None,
    key_folder_id: str | None = None,
) -> bytes:
    if folder_id is None and key_folder_id is None:
        text = f"coffre/item-field/v1|vault={vault_id}|item={item_id}|field={field}|version={version}|key={key_version}"
    else:
        text = (
            f"coffre/item-field/v2|vault={vault_id}|folder={folder_id or ''}|keyfolder={key_folder_id or ''}"
            f"|item={item_id}|field={field}|version={version}|key={key_version}"
        )
    return text.encode("ascii")


def seal_values(
    work: Work,
    key: Any,
    vault_id: str,
    item_id: str,
    version: int,
    folder_id: str | None,
    ref: KeyRef,
    values: Mapping[str, str | None],
) -> dict[str, bytes | None]:
    """``{name}_ct`` columns for ``values`` sealed under ``key`` (which is ``ref``)."""
    sealed: dict[str, bytes | None] = {}
    for name in FIELDS:
        value = values.get(name)
        sealed[f"{name}_ct"] = (
            None
            if value is None
            else work.encrypt_field(
                key,
                value.encode("utf-8"),
                field_context(vault_id, item_id, name, version, ref.version, folder_id, ref.folder_id),
            )
        )
    return sealed


def open_row(work: Work, key: Any, row: Any, item_id: str, names: Iterable[str] = FIELDS) -> dict[str, str | None]:
    """Decrypt the named fields of an item or item-version row; DecryptionFailed on
    any tampering (the caller maps it to an integrity failure)."""
    out: dict[str, str | None] = {}
    for name in names:
        blob = getattr(row, f"{name}_ct")
        out[name] = (
            None
            if blob is None
            else work.decrypt_field(
                key,
                blob,
                field_context(
                    row.vault_id, item_id, name, row.version, row.key_version, row.folder_id, row.key_folder_id
                ),
            ).decode("utf-8")
        )
    return out


def reseal_row(
    work: Work, row: Any, item_id: str, old_key: Any, new_key: Any, ref: KeyRef, folder_id: str | None
) -> None:
    """Re-encrypt an item or item-version row under ``new_key`` (``ref``), in
    ``folder_id``; raises DecryptionFailed if the old ciphertext does not open."""
    values = open_row(work, old_key, row, item_id)
    sealed = seal_values(work, new_key, row.vault_id, item_id, row.version, folder_id, ref, values)
    for column, blob in sealed.items():
        setattr(row, column, blob)
    row.folder_id = folder_id
    row.key_folder_id = ref.folder_id
    row.key_version = ref.version


def item_id_of(row: Any) -> str:
    """Items carry ``id``, history rows ``item_id``."""
    return str(getattr(row, "item_id", None) or row.id)


def reseal_rows(
    work: Work,
    rows: Iterable[Any],
    old_key: Callable[[KeyRef], Any],
    new_key: Any,
    ref: KeyRef,
    folder_id: Callable[[Any], str | None] | None = None,
) -> int:
    """Re-encrypt ``rows`` under ``new_key``; ``old_key`` maps each row's current
    key to its handle. Returns how many rows were re-sealed."""
    count = 0
    for row in rows:
        current = KeyRef(row.key_folder_id, row.key_version)
        target = row.folder_id if folder_id is None else folder_id(row)
        reseal_row(work, row, item_id_of(row), old_key(current), new_key, ref, target)
        count += 1
    return count
