"""The item service: create, list, read, update (and move), delete, with the
caller's access checked where the item is (appliance/folders)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, and_, bindparam, delete, select, update

from appliance.errors import Conflict, Forbidden, IntegrityFailure, NotFound, ValidationFailed
from appliance.folders import FIELDS, KeyRef, Level, Place
from appliance.folders.sealing import open_row, reseal_rows, seal_values
from appliance.history.retention import archive
from appliance.integrity import audits_integrity
from appliance.items.fields import ItemFields, ItemSummary, ItemView
from appliance.models import Item, ItemVersion, VaultMember
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from appliance.vaults import Role
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

NO_ITEM = "no such item"
NO_FOLDER = "no such folder"
STAY: Any = object()  # folder_id not given: the item stays where it is

_ITEM_WITH_MEMBER = (
    select(
        *Item.__table__.columns,
        VaultMember.vault_id.label("m_vault_id"),
        VaultMember.role.label("m_role"),
        VaultMember.wrapped_key.label("m_wrapped_key"),
        VaultMember.wrapped_key_mac.label("m_wrapped_key_mac"),
        VaultMember.key_version.label("m_key_version"),
        VaultMember.row_mac.label("m_row_mac"),
        VaultMember.anchor_bucket.label("m_anchor_bucket"),
    )
    .join(VaultMember, and_(VaultMember.vault_id == Item.vault_id, VaultMember.user_id == bindparam("uid")))
    .where(Item.id == bindparam("iid"))
)


def _check_version(version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValidationFailed("version must be a positive integer (the version you read)")


def _folder_arg(values: dict[str, Any], folder_id: Any) -> Any:
    """``folder_id`` given as a keyword or in ``values`` (None: the vault root)."""
    if folder_id is STAY and "folder_id" in values:
        folder_id = values["folder_id"]
    if folder_id is not STAY and folder_id is not None and not isinstance(folder_id, str):
        raise ValidationFailed("folder_id must be a folder id or null")
    return folder_id


def _need(at_least: Role) -> Level:
    return Level.FULL if at_least >= Role.WRITE else Level.READ


class Items:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    # -- where an item is, and who may do what there ----------------------------------

    def _member_for_item(
        self, db: Any, principal: Principal, item_id: str, at_least: Role, work: Work | None = None
    ) -> tuple[Item, VaultMember]:
        """The item and the caller's membership of its vault, in one query; the
        caller's level in the item's folder must reach ``at_least`` (read: read,
        write: full). Unknown, not a member, or in a folder the caller may not see:
        the same NotFound."""
        item, member, _ = self._placed(db, principal, item_id, at_least, work)
        return item, member

    def _placed(
        self, db: Any, principal: Principal, item_id: str, at_least: Role, work: Work | None = None
    ) -> tuple[Item, VaultMember, Place]:
        if not is_id(item_id):
            raise NotFound(NO_ITEM)
        # Plain columns, not ORM objects: this runs on every item request.
        row = db.connection().execute(_ITEM_WITH_MEMBER, {"iid": item_id, "uid": principal.user_id}).one_or_none()
        if row is None:
            raise NotFound(NO_ITEM)
        values = row._asdict()
        member = VaultMember(
            vault_id=values.pop("m_vault_id"),
            user_id=principal.user_id,
            role=values.pop("m_role"),
            wrapped_key=values.pop("m_wrapped_key"),
            wrapped_key_mac=values.pop("m_wrapped_key_mac"),
            key_version=values.pop("m_key_version"),
            row_mac=values.pop("m_row_mac"),
            anchor_bucket=values.pop("m_anchor_bucket"),
        )
        item = Item(**values)
        if work is None:
            with self.app.keystore.work() as own:
                return self._place_item(db, own, principal, item, member, at_least)
        return self._place_item(db, work, principal, item, member, at_least)

    def _place_item(
        self, db: Any, work: Work, principal: Principal, item: Item, member: VaultMember, at_least: Role
    ) -> tuple[Item, VaultMember, Place]:
        try:
            member = self.app.vaults.checked_membership(db, principal, member, Role.READ, work)
        except NotFound:
            raise NotFound(NO_ITEM) from None
        place = self.app.folders.place(db, work, principal, member, item.folder_id, NO_ITEM)
        if place.level < _need(at_least):
            raise Forbidden("this needs full access where the item is")
        if KeyRef(item.key_folder_id, item.key_version) != place.ref:
            raise Conflict("the key changed meanwhile; retry")
        return item, member, place

    def _key(self, work: Work, principal: Principal, member: VaultMember, ref: KeyRef) -> Any:
        with self.app.db.read() as db:
            return self.app.folders.key(db, work, principal, member, ref)

    def _opened(
        self, work: Work, principal: Principal, member: VaultMember, row: Any, names: tuple[str, ...] = FIELDS
    ) -> dict[str, str | None]:
        """Decrypt the named fields of an item (or item version) row for the caller."""
        key = self._key(work, principal, member, KeyRef(row.key_folder_id, row.key_version))
        item_id = str(getattr(row, "item_id", None) or row.id)
        try:
            return open_row(work, key, row, item_id, names)
        except DecryptionFailed:
            with self.app.db.write() as db:
                self.app.audit.by(
                    principal, db, work, "integrity.failed", target=item_id, what="item", vault=row.vault_id
                )
            raise IntegrityFailure() from None

    # -- operations ------------------------------------------------------------------

    @audits_integrity
    def create(self, principal: Principal, vault_id: str, values: dict[str, Any], folder_id: Any = STAY) -> ItemView:
        """A new item in the vault root or in ``folder_id`` (keyword or ``values["folder_id"]``)."""
        fields = ItemFields.validate(values)
        folder_id = _folder_arg(values, folder_id)
        folder_id = None if folder_id is STAY else folder_id
        item_id = new_id()
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                member = self.app.vaults.membership(db, principal, vault_id, Role.READ, work)
                place = self.app.folders.place(db, work, principal, member, folder_id, NO_FOLDER)
                if place.level < Level.FULL:
                    raise Forbidden("this needs full access where the item goes")
                key = self.app.folders.key(db, work, principal, member, place.ref)
            sealed = seal_values(work, key, vault_id, item_id, 1, folder_id, place.ref, fields.values())
            now = self.app.clock()
            with self.app.db.write() as db:
                self.app.vaults.lock(db, vault_id, exclusive=False)
                current = self.app.vaults.membership(db, principal, vault_id, Role.READ, work)
                again = self.app.folders.place(db, work, principal, current, folder_id, NO_FOLDER)
                if again.ref != place.ref or current.key_version != member.key_version:
                    raise Conflict("the key changed meanwhile; retry")
                db.add(
                    Item(
                        id=item_id,
                        vault_id=vault_id,
                        folder_id=folder_id,
                        key_folder_id=place.ref.folder_id,
                        version=1,
                        key_version=place.ref.version,
                        created_at=now,
                        updated_at=now,
                        created_by=principal.user_id,
                        updated_by=principal.user_id,
                        **sealed,
                    )
                )
                self.app.audit.by(principal, db, work, "item.created", target=item_id, vault=vault_id, folder=folder_id)
        return ItemView(item_id, vault_id, 1, fields, now, now, folder_id)

    @audits_integrity
    def list_items(self, principal: Principal, vault_id: str, folder_id: str | None = None) -> list[ItemSummary]:
        """Every item the caller may see in the vault, or only those directly in
        ``folder_id``."""
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                member = self.app.vaults.membership(db, principal, vault_id, Role.READ, work)
                place = self.app.folders.place(db, work, principal, member, folder_id, NO_FOLDER)
                query = select(Item).where(Item.vault_id == vault_id)
                if folder_id is not None:
                    query = query.where(Item.folder_id == folder_id)
                items = list(db.execute(query).scalars())
                tree = place.tree
                levels = tree.levels(principal.user_id)
                refs = {fid: tree.key_ref(fid) for fid in levels}
                keys: dict[KeyRef, Any] = {}
                visible = []
                for item in items:
                    ref = KeyRef(item.key_folder_id, item.key_version)
                    if levels.get(item.folder_id, Level.NONE) < Level.READ or refs[item.folder_id] != ref:
                        continue
                    if ref not in keys:
                        keys[ref] = self.app.folders.key(db, work, principal, member, ref)
                    visible.append(item)
            out = []
            for item in visible:
                try:
                    key = keys[KeyRef(item.key_folder_id, item.key_version)]
                    values = open_row(work, key, item, item.id, ("title", "username", "url"))
                except DecryptionFailed:
                    self._opened(work, principal, member, item, ("title",))  # audits, raises
                    raise
                out.append(
                    ItemSummary(
                        item.id,
                        item.vault_id,
                        item.version,
                        values["title"] or "",
                        values["username"],
                        values["url"],
                        item.updated_at,
                        item.folder_id,
                    )
                )
            with self.app.db.write() as db:
                self.app.audit.by(principal, db, work, "item.listed", target=vault_id, count=len(out), folder=folder_id)
        return sorted(out, key=lambda s: (s.title.lower(), s.id))

    @audits_integrity
    def get(self, principal: Principal, item_id: str) -> ItemView:
        with self.app.db.read() as db:
            item, member = self._member_for_item(db, principal, item_id, Role.READ)
        with self.app.keystore.work() as work:
            values = self._opened(work, principal, member, item)
            with self.app.db.write() as db:
                self.app.audit.by(principal, db, work, "item.read", target=item.id, vault=item.vault_id)
        return self._view(item, item.version, ItemFields(**values), item.updated_at)  # type: ignore[arg-type]

    @staticmethod
    def _view(item: Item, version: int, fields: ItemFields, updated_at: float, folder_id: Any = STAY) -> ItemView:
        folder = item.folder_id if folder_id is STAY else folder_id
        return ItemView(item.id, item.vault_id, version, fields, item.created_at, updated_at, folder)

    @audits_integrity
    def update(
        self, principal: Principal, item_id: str, values: dict[str, Any], version: Any, folder_id: Any = STAY
    ) -> ItemView:
        """Full replacement: a field not given is cleared; ``folder_id`` (keyword or
        in ``values``) moves the item, left out it stays where it is."""
        _check_version(version)
        fields = ItemFields.validate(values)
        folder_id = _folder_arg(values, folder_id)
        with self.app.db.read() as db:
            item, member = self._member_for_item(db, principal, item_id, Role.WRITE)
        if item.version != version:
            raise Conflict(f"stale version: the item is at version {item.version}")
        with self.app.keystore.work() as work:
            return self._store(work, principal, item, member, fields, version, folder_id)

    @audits_integrity
    def patch(
        self, principal: Principal, item_id: str, changes: dict[str, Any], version: Any, folder_id: Any = STAY
    ) -> ItemView:
        """Partial update: a field not in ``changes`` keeps its value, None clears it
        (the title cannot be cleared)."""
        _check_version(version)
        changes = dict(changes)
        folder_id = _folder_arg(changes, folder_id)
        changes.pop("folder_id", None)
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ValidationFailed(f"unknown item fields: {', '.join(unknown)}")
        if "title" in changes and changes["title"] is None:
            raise ValidationFailed("title cannot be cleared")
        with self.app.db.read() as db:
            item, member = self._member_for_item(db, principal, item_id, Role.WRITE)
        if item.version != version:
            raise Conflict(f"stale version: the item is at version {item.version}")
        with self.app.keystore.work() as work:
            current = self._opened(work, principal, member, item)
            fields = ItemFields.validate({**current, **changes})
            changed = ",".join(sorted(changes) + ([] if folder_id is STAY else ["folder_id"]))
            return self._store(work, principal, item, member, fields, version, folder_id, changed=changed)

    def _store(
        self,
        work: Work,
        principal: Principal,
        item: Item,
        member: VaultMember,
        fields: ItemFields,
        version: int,
        folder_id: Any = STAY,
        **details: Any,
    ) -> ItemView:
        """Seal ``fields`` as the next version of ``item`` (in ``folder_id`` if it
        moves), if it is still at ``version``; the previous version goes to history."""
        new_version = version + 1
        target = item.folder_id if folder_id is STAY else folder_id
        old_ref = KeyRef(item.key_folder_id, item.key_version)
        with self.app.db.read() as db:
            place = self.app.folders.place(db, work, principal, member, target, NO_FOLDER)
            if place.level < Level.FULL:
                raise Forbidden("this needs full access where the item goes")
            key = self.app.folders.key(db, work, principal, member, place.ref)
            old_key = key if old_ref == place.ref else self.app.folders.key(db, work, principal, member, old_ref)
        sealed = seal_values(work, key, item.vault_id, item.id, new_version, target, place.ref, fields.values())
        now = self.app.clock()
        moved = target != item.folder_id or place.ref != old_ref
        with self.app.db.write() as db:
            # Shared vault lock: no update lands while a vault or folder key is rotated.
            self.app.vaults.lock(db, item.vault_id, exclusive=False)
            current = self.app.vaults.membership(db, principal, item.vault_id, Role.READ, work)
            if self.app.folders.place(db, work, principal, current, target, NO_FOLDER).ref != place.ref:
                raise Conflict("the key changed meanwhile; retry")
            archive(self.app, db, item)
            result: CursorResult[Any] = db.execute(  # type: ignore[assignment]
                update(Item)
                .where(
                    Item.id == item.id,
                    Item.version == version,
                    Item.key_version == old_ref.version,
                    Item.key_folder_id.is_(None)
                    if old_ref.folder_id is None
                    else Item.key_folder_id == old_ref.folder_id,
                )
                .values(
                    version=new_version,
                    updated_at=now,
                    updated_by=principal.user_id,
                    folder_id=target,
                    key_folder_id=place.ref.folder_id,
                    key_version=place.ref.version,
                    **sealed,
                )
            )
            if result.rowcount != 1:
                raise Conflict("stale version: the item changed meanwhile")
            if moved:  # the history follows the item under its new key
                rows = db.execute(select(ItemVersion).where(ItemVersion.item_id == item.id)).scalars()
                try:
                    reseal_rows(work, rows, lambda _: old_key, key, place.ref, lambda _: target)
                except DecryptionFailed:
                    raise IntegrityFailure() from None
            event_details = dict(details)
            if target != item.folder_id:
                event_details.update(moved_from=item.folder_id, moved_to=target)
            self.app.audit.by(
                principal,
                db,
                work,
                "item.updated",
                target=item.id,
                vault=item.vault_id,
                version=new_version,
                **event_details,
            )
        return self._view(item, new_version, fields, now, target)

    @audits_integrity
    def delete(self, principal: Principal, item_id: str) -> None:
        """The item and its whole history."""
        with self.app.keystore.work() as work, self.app.db.write() as db:
            item, _ = self._member_for_item(db, principal, item_id, Role.WRITE, work)
            self.app.vaults.lock(db, item.vault_id, exclusive=False)  # not during a key rotation
            db.execute(delete(ItemVersion).where(ItemVersion.item_id == item.id))
            db.execute(delete(Item).where(Item.id == item.id))
            self.app.audit.by(principal, db, work, "item.deleted", target=item.id, vault=item.vault_id)
