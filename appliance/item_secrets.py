"""What the web portal needs of an item beyond the API's reads: one field on an
explicit action (audited apart from ``item.read``), who changed it last, and an
edit that keeps the stored password when the form leaves it blank (the edit
form never carries the current password)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.errors import Conflict, ValidationFailed
from appliance.integrity import recording_failures
from appliance.items import ItemView
from appliance.models import Item as ItemRow
from appliance.models import User
from appliance.sessions import Principal
from appliance.vaults import Role

if TYPE_CHECKING:
    from appliance.core import Appliance

# What the caller meant to do with the value: each is its own audit event.
PURPOSES = {"reveal": "item.revealed", "copy": "item.copied"}
SECRET_FIELDS = ("password", "username")


@dataclass(frozen=True)
class ItemDetails:
    item: ItemView
    updated_by: str | None  # e-mail address of whoever saved the current version


def reveal(app: Appliance, principal: Principal, item_id: str, purpose: str, field: str = "password") -> str | None:
    """Decrypt one field for the caller (read role), recorded as item.revealed or item.copied."""
    event = PURPOSES.get(purpose)
    if event is None or field not in SECRET_FIELDS:
        raise ValidationFailed("purpose must be reveal or copy")
    items = app.items
    with recording_failures(app):
        with app.db.read() as db:
            item, member = items._member_for_item(db, principal, item_id, Role.READ)
        if item.key_version != member.key_version:
            raise Conflict("the vault key changed meanwhile; retry")
        with app.keystore.work() as work:
            value = items._opened(work, principal, member, item, (field,))[field]
            with app.db.write() as db:
                app.audit.by(principal, db, work, event, target=item.id, vault=item.vault_id, field=field)
    return value


def details(app: Appliance, principal: Principal, item_id: str) -> ItemDetails:
    """The item (through the audited, permission-checked read) and who last changed it."""
    item = app.items.get(principal, item_id)
    with app.db.read() as db:
        email = db.execute(
            select(User.email).join(ItemRow, ItemRow.updated_by == User.id).where(ItemRow.id == item.id)
        ).scalar_one_or_none()
    return ItemDetails(item, email)


def update(
    app: Appliance,
    principal: Principal,
    item_id: str,
    values: dict[str, Any],
    version: int,
    keep_password: bool,
    keep_totp: bool = False,
) -> ItemView:
    """Save an edit; with ``keep_password`` (``keep_totp``) the stored password
    (TOTP secret) stays as it is: the edit form never carries either."""
    values = dict(values)
    kept = tuple(name for name, keep in (("password", keep_password), ("totp", keep_totp)) if keep)
    if kept:
        with recording_failures(app), app.db.read() as db:
            item, member = app.items._member_for_item(db, principal, item_id, Role.WRITE)
        if item.version != version:
            raise Conflict(f"stale version: the item is at version {item.version}")
        with recording_failures(app), app.keystore.work() as work:
            values.update(app.items._opened(work, principal, member, item, kept))
    return app.items.update(principal, item_id, values, version)
