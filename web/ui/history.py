"""An item's history in the portal: the versions kept, one of them, restore."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template
from sqlalchemy import select

from appliance.models import User
from web.deps import serialized
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller


class HistoryPages(Controller):
    path = "/items/{item_id:str}/history"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any], item_id: FromPath[str]) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            versions = app.history.versions(principal, item_id)
            item = app.items.get(principal, item_id)
            vault = app.vaults.get(principal, item.vault_id)
        who = {v.changed_by for v in versions}
        with app.db.read() as db:
            emails = dict(db.execute(select(User.id, User.email).where(User.id.in_(who))).all())
        return page(
            request,
            "item_history.html",
            vault=vault,
            item_id=item_id,
            title=item.fields.title,
            versions=versions,
            emails=emails,
            keep=app.settings.items.history_versions,
        )

    def _version(self, request: Request[Any, Any, Any], item_id: str, n: int, revealed: bool) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            version = app.history.version(principal, item_id, n)
            vault = app.vaults.get(principal, version.vault_id)
            folders = app.folders.list_folders(principal, vault.id)
        folder = next((f for f in folders if f.id == version.folder_id), None)
        can_write = (folder.access == "full") if folder is not None else vault.role != "read"
        return page(request, "item_version.html", vault=vault, version=version, revealed=revealed, can_write=can_write)

    @get("/{n:int}", sync_to_thread=True)
    def version(self, request: Request[Any, Any, Any], item_id: FromPath[str], n: FromPath[int]) -> Template:
        return self._version(request, item_id, n, revealed=False)

    @post("/{n:int}", status_code=200, sync_to_thread=True)
    def reveal(self, request: Request[Any, Any, Any], item_id: FromPath[str], n: FromPath[int]) -> Template:
        """The old password on an explicit action only."""
        return self._version(request, item_id, n, revealed=True)

    @post("/{n:int}/restore", status_code=200, sync_to_thread=True)
    def restore(self, request: Request[Any, Any, Any], item_id: FromPath[str], n: FromPath[int]) -> Response[Any]:
        with serialized(request):
            appliance_of(request).history.restore(caller(request), item_id, n)
        return see_other(f"/items/{item_id}", "item_restored")
