"""Credentials stored in vaults: each field sealed with AES-256-GCM under the vault
key inside the token, its associated data naming vault, item, field, item version
and vault-key version, so a ciphertext moved to any other place fails to open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, and_, bindparam, delete, select, update

from appliance.errors import Conflict, IntegrityFailure, NotFound, ValidationFailed
from appliance.integrity import audits_integrity
from appliance.models import Item, VaultMember
from appliance.sessions import Principal
from appliance.tokens import is_id, new_id
from appliance.vaults import Role
from hsm.errors import DecryptionFailed
from hsm.keystore import Work

if TYPE_CHECKING:
    from appliance.core import Appliance

FIELDS = ("title", "username", "password", "url", "notes")
LIMITS = {"title": 200, "username": 500, "password": 4096, "url": 2048, "notes": 65536}


@dataclass(frozen=True)
class ItemFields:
    title: str
    username: str | None = None
    password: str | None = None
    url: str | None = None
    notes: str | None = None

    @classmethod
    def validate(cls, values: dict[str, Any]) -> ItemFields:
        clean: dict[str, str | None] = {}
        for name in FIELDS:
            value = values.get(name)
            if value is None:
                if name == "title":
                    raise ValidationFailed("title is required")
                clean[name] = None
                continue
            if not isinstance(value, str):
                raise ValidationFailed(f"{name} must be a string")
            if len(value) > LIMITS[name]:
                raise ValidationFailed(f"{name} is longer than {LIMITS[name]} characters")
            clean[name] = value
        if not (clean["title"] or "").strip():
            raise ValidationFailed("title must not be empty")
        return cls(**clean)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ItemView:
    id: str
    vault_id: str
    version: int
    fields: ItemFields
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ItemSummary:
    id: str
    vault_id: str
    version: int
    title: str
    username: str | None
    url: str | None
    updated_at: float


def field_context(vault_id: str, item_id: str, field: str, version: int, key_version: int) -> bytes:
    return (
        f"coffre/item-field/v1|vault={vault_id}|item={item_id}|field={field}|version={version}|key={key_version}"
    ).encode("ascii")


def seal_fields(
    work: Work, key: Any, vault_id: str, item_id: str, version: int, key_version: int, fields: ItemFields
) -> dict[str, bytes | None]:
    sealed: dict[str, bytes | None] = {}
    for name in FIELDS:
        value = getattr(fields, name)
        sealed[f"{name}_ct"] = (
            None
            if value is None
            else work.encrypt_field(
                key, value.encode("utf-8"), field_context(vault_id, item_id, name, version, key_version)
            )
        )
    return sealed


def open_fields(work: Work, key: Any, item: Item, names: tuple[str, ...] = FIELDS) -> dict[str, str | None]:
    """Decrypt the named fields; raises DecryptionFailed on any tampering."""
    out: dict[str, str | None] = {}
    for name in names:
        blob = getattr(item, f"{name}_ct")
        out[name] = (
            None
            if blob is None
            else work.decrypt_field(
                key, blob, field_context(item.vault_id, item.id, name, item.version, item.key_version)
            ).decode("utf-8")
        )
    return out


def reencrypt_item(work: Work, item: Item, old_key: Any, new_key: Any, new_key_version: int) -> None:
    values = open_fields(work, old_key, item)
    sealed = seal_fields(work, new_key, item.vault_id, item.id, item.version, new_key_version, ItemFields(**values))  # type: ignore[arg-type]
    for column, blob in sealed.items():
        setattr(item, column, blob)
    item.key_version = new_key_version


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


class Items:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    def _member_for_item(self, db: Any, principal: Principal, item_id: str, at_least: Role) -> tuple[Item, VaultMember]:
        """The item and the caller's membership of its vault, in one query.

        Not a member: NotFound, as for an unknown id (existence stays hidden)."""
        if not is_id(item_id):
            raise NotFound("no such item")
        # Plain columns, not ORM objects: this runs on every item request.
        row = db.connection().execute(_ITEM_WITH_MEMBER, {"iid": item_id, "uid": principal.user_id}).one_or_none()
        if row is None:
            raise NotFound("no such item")
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
        member = self.app.vaults.checked_membership(db, principal, member, at_least)
        return item, member

    def _opened(
        self, work: Work, principal: Principal, member: VaultMember, item: Item, names: tuple[str, ...] = FIELDS
    ) -> dict[str, str | None]:
        key = self.app.vaults.vault_key(work, principal, member)
        try:
            return open_fields(work, key, item, names)
        except DecryptionFailed:
            with self.app.db.write() as db:
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "integrity.failed",
                    target=item.id,
                    what="item",
                    vault=item.vault_id,
                )
            raise IntegrityFailure() from None

    @audits_integrity
    def create(self, principal: Principal, vault_id: str, values: dict[str, Any]) -> ItemView:
        fields = ItemFields.validate(values)
        item_id = new_id()
        with self.app.keystore.work() as work:
            with self.app.db.read() as db:
                member = self.app.vaults.membership(db, principal, vault_id, Role.WRITE)
            key = self.app.vaults.vault_key(work, principal, member)
            sealed = seal_fields(work, key, vault_id, item_id, 1, member.key_version, fields)
            now = self.app.clock()
            with self.app.db.write() as db:
                self.app.vaults.lock(db, vault_id, exclusive=False)
                current = self.app.vaults.membership(db, principal, vault_id, Role.WRITE)
                if current.key_version != member.key_version:
                    raise Conflict("the vault key changed meanwhile; retry")
                db.add(
                    Item(
                        id=item_id,
                        vault_id=vault_id,
                        version=1,
                        key_version=member.key_version,
                        created_at=now,
                        updated_at=now,
                        created_by=principal.user_id,
                        updated_by=principal.user_id,
                        **sealed,
                    )
                )
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "item.created",
                    target=item_id,
                    vault=vault_id,
                )
        return ItemView(item_id, vault_id, 1, fields, now, now)

    @audits_integrity
    def list_items(self, principal: Principal, vault_id: str) -> list[ItemSummary]:
        with self.app.db.read() as db:
            member = self.app.vaults.membership(db, principal, vault_id, Role.READ)
            items = list(
                db.execute(
                    select(Item).where(Item.vault_id == vault_id).where(Item.key_version == member.key_version)
                ).scalars()
            )
        out = []
        with self.app.keystore.work() as work:
            for item in items:
                values = self._opened(work, principal, member, item, ("title", "username", "url"))
                out.append(
                    ItemSummary(
                        item.id,
                        item.vault_id,
                        item.version,
                        values["title"] or "",
                        values["username"],
                        values["url"],
                        item.updated_at,
                    )
                )
            with self.app.db.write() as db:
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "item.listed",
                    target=vault_id,
                    count=len(out),
                )
        return sorted(out, key=lambda s: (s.title.lower(), s.id))

    @audits_integrity
    def get(self, principal: Principal, item_id: str) -> ItemView:
        with self.app.db.read() as db:
            item, member = self._member_for_item(db, principal, item_id, Role.READ)
        if item.key_version != member.key_version:
            raise Conflict("the vault key changed meanwhile; retry")
        with self.app.keystore.work() as work:
            values = self._opened(work, principal, member, item)
            with self.app.db.write() as db:
                self.app.audit.by(
                    principal,
                    db,
                    work,
                    "item.read",
                    target=item.id,
                    vault=item.vault_id,
                )
        return ItemView(
            item.id,
            item.vault_id,
            item.version,
            ItemFields(**values),  # type: ignore[arg-type]
            item.created_at,
            item.updated_at,
        )

    @audits_integrity
    def update(self, principal: Principal, item_id: str, values: dict[str, Any], version: Any) -> ItemView:
        """Full replacement: a field not given is cleared."""
        _check_version(version)
        fields = ItemFields.validate(values)
        with self.app.db.read() as db:
            item, member = self._member_for_item(db, principal, item_id, Role.WRITE)
        if item.version != version:
            raise Conflict(f"stale version: the item is at version {item.version}")
        with self.app.keystore.work() as work:
            return self._store(work, principal, item, member, fields, version)

    @audits_integrity
    def patch(self, principal: Principal, item_id: str, changes: dict[str, Any], version: Any) -> ItemView:
        """Partial update: a field not in ``changes`` keeps its value, None clears it
        (the title cannot be cleared)."""
        _check_version(version)
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ValidationFailed(f"unknown item fields: {', '.join(unknown)}")
        if "title" in changes and changes["title"] is None:
            raise ValidationFailed("title cannot be cleared")
        with self.app.db.read() as db:
            item, member = self._member_for_item(db, principal, item_id, Role.WRITE)
        if item.version != version:
            raise Conflict(f"stale version: the item is at version {item.version}")
        if item.key_version != member.key_version:
            raise Conflict("the vault key changed meanwhile; retry")
        with self.app.keystore.work() as work:
            current = self._opened(work, principal, member, item)
            fields = ItemFields.validate({**current, **changes})
            return self._store(work, principal, item, member, fields, version, changed=",".join(sorted(changes)))

    def _store(
        self,
        work: Work,
        principal: Principal,
        item: Item,
        member: VaultMember,
        fields: ItemFields,
        version: int,
        **details: Any,
    ) -> ItemView:
        """Seal ``fields`` as the next version of ``item``, if it is still at ``version``."""
        new_version = version + 1
        key = self.app.vaults.vault_key(work, principal, member)
        sealed = seal_fields(work, key, item.vault_id, item.id, new_version, member.key_version, fields)
        now = self.app.clock()
        with self.app.db.write() as db:
            # Shared vault lock: no update lands while the vault key is being rotated.
            self.app.vaults.lock(db, item.vault_id, exclusive=False)
            self.app.vaults.membership(db, principal, item.vault_id, Role.WRITE)
            result: CursorResult[Any] = db.execute(  # type: ignore[assignment]
                update(Item)
                .where(Item.id == item.id, Item.version == version, Item.key_version == member.key_version)
                .values(version=new_version, updated_at=now, updated_by=principal.user_id, **sealed)
            )
            if result.rowcount != 1:
                raise Conflict("stale version: the item changed meanwhile")
            self.app.audit.by(
                principal,
                db,
                work,
                "item.updated",
                target=item.id,
                vault=item.vault_id,
                version=new_version,
                **details,
            )
        return ItemView(item.id, item.vault_id, new_version, fields, item.created_at, now)

    @audits_integrity
    def delete(self, principal: Principal, item_id: str) -> None:
        with self.app.keystore.work() as work, self.app.db.write() as db:
            item, _ = self._member_for_item(db, principal, item_id, Role.WRITE)
            self.app.vaults.lock(db, item.vault_id, exclusive=False)  # not during a key rotation
            db.execute(delete(Item).where(Item.id == item.id))
            self.app.audit.by(
                principal,
                db,
                work,
                "item.deleted",
                target=item.id,
                vault=item.vault_id,
            )
