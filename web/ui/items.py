"""A vault's items, an item, its editor, reveal/copy, the password generator."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import Response, Template

from appliance import generator, item_secrets
from appliance.errors import ClientError, Conflict
from appliance.items import FIELDS
from web.deps import serialized
from web.ui.folders import folder_options
from web.ui.forms import Form, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller

SORTS = ("title", "username", "url", "updated")
EDITABLE = ("title", "username", "url", "notes")


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _values(data: dict[str, Any]) -> dict[str, str | None]:
    """The item form's fields; empty optional fields are stored as absent; the
    folder ("" for the vault root) as ``folder_id``."""
    values: dict[str, str | None] = {}
    for name in FIELDS:
        value = text(data, name)
        values[name] = value if value or name == "title" else None
    values["folder_id"] = text(data, "folder_id", 64) or None
    return values


def _folders(request: Request[Any, Any, Any], vault_id: str) -> list[Any]:
    return appliance_of(request).folders.list_folders(caller(request), vault_id)


class ItemPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/vaults/{vault_id:str}", sync_to_thread=True)
    def vault(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Template:
        app = appliance_of(request)
        query = (request.query_params.get("q") or "")[:200]
        sort = request.query_params.get("sort") or "title"
        sort = sort if sort in SORTS else "title"
        descending = request.query_params.get("dir") == "desc"
        current = (request.query_params.get("folder") or "")[:64] or None
        with serialized(request):
            principal = caller(request)
            vault = app.vaults.get(principal, vault_id)
            folders = app.folders.list_folders(principal, vault_id)
            items = app.items.list_items(principal, vault_id, current)
        folder = next((f for f in folders if f.id == current), None)
        needle = query.strip().lower()
        if needle:
            items = [i for i in items if any(needle in (v or "").lower() for v in (i.title, i.username, i.url))]
        key = {
            "title": lambda i: (i.title.lower(), i.id),
            "username": lambda i: ((i.username or "").lower(), i.id),
            "url": lambda i: ((i.url or "").lower(), i.id),
            "updated": lambda i: (i.updated_at, i.id),
        }[sort]
        items = sorted(items, key=key, reverse=descending)  # type: ignore[arg-type]
        return page(
            request,
            "vault.html",
            vault=vault,
            items=items,
            query=query,
            sort=sort,
            descending=descending,
            folders=folders,
            folder=folder,
            folder_names={f.id: f.name for f in folders},
        )

    @get("/vaults/{vault_id:str}/items/new", sync_to_thread=True)
    def new(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Template:
        current = (request.query_params.get("folder") or "")[:64] or None
        with serialized(request):
            vault = appliance_of(request).vaults.get(caller(request), vault_id)
            folders = folder_options(_folders(request, vault_id))
        values = {"folder_id": current}
        return page(request, "item_form.html", vault=vault, values=values, item_id=None, version=None, folders=folders)

    @post("/vaults/{vault_id:str}/items", status_code=200, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any], vault_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        values = _values(data)
        try:
            with serialized(request):
                item = app.items.create(caller(request), vault_id, values)
        except ClientError as exc:
            with serialized(request):
                vault = app.vaults.get(caller(request), vault_id)
                folders = folder_options(_folders(request, vault_id))
            return page(
                request,
                "item_form.html",
                status=exc.status,
                error=explain(request, exc),
                vault=vault,
                values=values,
                item_id=None,
                version=None,
                folders=folders,
            )
        return see_other(f"/items/{item.id}", "item_created")

    @get("/items/{item_id:str}", sync_to_thread=True)
    def item(self, request: Request[Any, Any, Any], item_id: FromPath[str]) -> Template:
        return self._item_page(request, item_id)

    def _item_page(
        self, request: Request[Any, Any, Any], item_id: str, revealed: str | None = None, totp: Any = None
    ) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            found = item_secrets.details(app, principal, item_id)
            vault = app.vaults.get(principal, found.item.vault_id)
            folders = app.folders.list_folders(principal, vault.id)
        fields = found.item.fields
        folder = next((f for f in folders if f.id == found.item.folder_id), None)
        return page(
            request,
            "item.html",
            vault=vault,
            item=found.item,
            title=fields.title,
            username=fields.username,
            url=fields.url,
            notes=fields.notes,
            has_password=fields.password is not None,
            updated_by=found.updated_by,
            revealed=revealed,
            folder=folder,
            can_write=(folder.access == "full") if folder is not None else vault.role != "read",
            has_totp=fields.totp is not None,
            totp=totp,
        )

    @post("/items/{item_id:str}/totp", status_code=200, sync_to_thread=True)
    def totp(self, request: Request[Any, Any, Any], item_id: FromPath[str]) -> Response[Any]:
        """The current TOTP code, on an explicit action (JSON for the page's script)."""
        with serialized(request):
            code = appliance_of(request).history.totp(caller(request), item_id)
        if _wants_json(request):
            return Response({"code": code.code, "seconds_left": code.seconds_left})
        return self._item_page(request, item_id, totp=code)

    @post("/items/{item_id:str}/reveal", status_code=200, sync_to_thread=True)
    def reveal(self, request: Request[Any, Any, Any], item_id: FromPath[str], data: Form) -> Response[Any]:
        """The password on an explicit action only, never in a page's first HTML."""
        purpose = text(data, "purpose", 16) or "reveal"
        with serialized(request):
            value = item_secrets.reveal(appliance_of(request), caller(request), item_id, purpose)
        if _wants_json(request):
            return Response({"value": value or ""})
        return self._item_page(request, item_id, revealed=value or "")

    @get("/items/{item_id:str}/edit", sync_to_thread=True)
    def edit(self, request: Request[Any, Any, Any], item_id: FromPath[str]) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            found = item_secrets.details(app, principal, item_id)
            vault = app.vaults.get(principal, found.item.vault_id)
            folders = folder_options(_folders(request, vault.id))
        values: dict[str, Any] = {name: getattr(found.item.fields, name) for name in EDITABLE}
        values["folder_id"] = found.item.folder_id
        return page(
            request,
            "item_form.html",
            vault=vault,
            values=values,
            item_id=item_id,
            version=found.item.version,
            folders=folders,
            has_totp=found.item.fields.totp is not None,
        )

    @post("/items/{item_id:str}/edit", status_code=200, sync_to_thread=True)
    def save(self, request: Request[Any, Any, Any], item_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        values = _values(data)
        keep = values["password"] is None
        keep_totp = values["totp"] is None and text(data, "totp_clear", 8) != "on"
        try:
            version = int(text(data, "version", 12) or "0")
        except ValueError:
            version = 0
        try:
            with serialized(request):
                item_secrets.update(
                    app, caller(request), item_id, values, version, keep_password=keep, keep_totp=keep_totp
                )
        except ClientError as exc:
            with serialized(request):
                principal = caller(request)
                current = app.items.get(principal, item_id)
                vault = app.vaults.get(principal, current.vault_id)
                folders = folder_options(_folders(request, vault.id))
            # A stale version: keep what was typed, and let the next save go over the current version.
            return page(
                request,
                "item_form.html",
                status=exc.status,
                error=explain(request, exc),
                vault=vault,
                values=values,
                item_id=item_id,
                version=current.version if isinstance(exc, Conflict) else version,
                stale=isinstance(exc, Conflict),
                folders=folders,
                has_totp=current.fields.totp is not None,
            )
        return see_other(f"/items/{item_id}", "item_updated")

    @get("/items/{item_id:str}/delete", sync_to_thread=True)
    def confirm_delete(self, request: Request[Any, Any, Any], item_id: FromPath[str]) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            found = item_secrets.details(app, principal, item_id)
            vault = app.vaults.get(principal, found.item.vault_id)
        return page(request, "item_delete.html", vault=vault, item=found.item, title=found.item.fields.title)

    @post("/items/{item_id:str}/delete", status_code=200, sync_to_thread=True)
    def delete(self, request: Request[Any, Any, Any], item_id: FromPath[str], data: Form) -> Response[Any]:
        vault_id = text(data, "vault_id", 64)
        with serialized(request):
            appliance_of(request).items.delete(caller(request), item_id)
        return see_other(f"/vaults/{vault_id}" if vault_id.isalnum() else "/vaults", "item_deleted")

    @post("/ui/generate", status_code=200, sync_to_thread=True)
    def generate(self, request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> Response[Any]:
        """A new random password or passphrase (``secrets``), for the item editor."""
        caller(request)

        def number(name: str, default: int) -> int:
            value = data.get(name, default)
            return value if isinstance(value, int) and not isinstance(value, bool) else default

        options = generator.GeneratorOptions(
            length=number("length", 20),
            lower=data.get("lower") is True,
            upper=data.get("upper") is True,
            digits=data.get("digits") is True,
            symbols=data.get("symbols") is True,
            passphrase=data.get("passphrase") is True,
            words=number("words", 6),
        )
        try:
            return Response({"value": generator.generate(options)})
        except ClientError as exc:
            return Response({"error": explain(request, exc)}, status_code=exc.status)
