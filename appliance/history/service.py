"""Item history (list, view, restore) and TOTP codes, with the same access checks
as the item itself (appliance/items.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from appliance.errors import NotFound, ValidationFailed
from appliance.history.totp import TotpCode, code_at
from appliance.integrity import audits_integrity
from appliance.models import ItemVersion
from appliance.sessions import Principal

if TYPE_CHECKING:
    from appliance.core import Appliance
    from appliance.items import ItemView

NO_VERSION = "no such version"


@dataclass(frozen=True)
class VersionInfo:
    version: int
    changed_by: str
    changed_at: float
    current: bool


def _check_n(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValidationFailed("the version must be a positive integer")
    return n


class History:
    def __init__(self, app: Appliance) -> None:
        self.app = app

    @audits_integrity
    def versions(self, principal: Principal, item_id: str) -> list[VersionInfo]:
        from appliance.vaults import Role

        with self.app.db.read() as db:
            item, _ = self.app.items._member_for_item(db, principal, item_id, Role.READ)
            rows = db.execute(
                select(ItemVersion.version, ItemVersion.changed_by, ItemVersion.changed_at)
                .where(ItemVersion.item_id == item.id)
                .order_by(ItemVersion.version.desc())
            ).all()
        out = [VersionInfo(item.version, item.updated_by, item.updated_at, True)]
        out += [VersionInfo(v, by, at, False) for v, by, at in rows if v != item.version]
        return out

    def _version(self, principal: Principal, item_id: str, n: int, write: bool) -> tuple[Any, Any, Any]:
        from appliance.vaults import Role

        with self.app.db.read() as db:
            item, member = self.app.items._member_for_item(db, principal, item_id, Role.WRITE if write else Role.READ)
            if n == item.version:
                return item, member, item
            row = db.get(ItemVersion, (item.id, n))
            if row is None:
                raise NotFound(NO_VERSION)
            db.expunge(row)
        return item, member, row

    @audits_integrity
    def version(self, principal: Principal, item_id: str, n: Any) -> ItemView:
        from appliance.items import ItemFields, ItemView

        n = _check_n(n)
        item, member, row = self._version(principal, item_id, n, write=False)
        with self.app.keystore.work() as work:
            values = self.app.items._opened(work, principal, member, row)
            with self.app.db.write() as db:
                self.app.audit.by(
                    principal, db, work, "item.version_read", target=item.id, vault=item.vault_id, version=n
                )
        at = item.updated_at if row is item else row.changed_at
        return ItemView(
            item.id,
            item.vault_id,
            n,
            ItemFields(**values),  # type: ignore[arg-type]
            item.created_at,
            at,
            item.folder_id,
        )

    @audits_integrity
    def restore(self, principal: Principal, item_id: str, n: Any) -> ItemView:
        """The fields of version ``n`` become a new version (the current one goes
        to history like any update)."""
        from appliance.items import ItemFields

        n = _check_n(n)
        item, member, row = self._version(principal, item_id, n, write=True)
        with self.app.keystore.work() as work:
            values = self.app.items._opened(work, principal, member, row)
            fields = ItemFields(**values)  # type: ignore[arg-type]
            return self.app.items._store(work, principal, item, member, fields, item.version, restored_from=n)

    @audits_integrity
    def totp(self, principal: Principal, item_id: str) -> TotpCode:
        from appliance.vaults import Role

        with self.app.db.read() as db:
            item, member = self.app.items._member_for_item(db, principal, item_id, Role.READ)
        with self.app.keystore.work() as work:
            secret = self.app.items._opened(work, principal, member, item, ("totp",))["totp"]
            if secret is None:
                raise NotFound("this item has no TOTP secret")
            code = code_at(secret, self.app.clock())
            with self.app.db.write() as db:
                self.app.audit.by(principal, db, work, "item.totp", target=item.id, vault=item.vault_id)
        return code
