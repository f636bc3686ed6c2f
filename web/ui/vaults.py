"""Vaults: the list, create, rename, delete (role checks live in appliance.vaults)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template

from appliance.errors import ClientError
from web.deps import serialized
from web.ui.forms import Form, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller


class VaultPages(Controller):
    path = "/vaults"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any]) -> Template:
        with serialized(request):
            vaults = appliance_of(request).vaults.list_vaults(caller(request))
        return page(request, "vaults.html", vaults=vaults)

    @get("/new", sync_to_thread=True)
    def new(self, request: Request[Any, Any, Any]) -> Template:
        caller(request)
        return page(request, "vault_new.html")

    @post("/", status_code=200, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        name = text(data, "name", 400)
        try:
            with serialized(request):
                vault = appliance_of(request).vaults.create(caller(request), name)
        except ClientError as exc:
            return page(request, "vault_new.html", status=exc.status, error=explain(request, exc), name=name)
        return see_other(f"/vaults/{vault.id}", "vault_created")

    @get("/{vault_id:str}/settings", sync_to_thread=True)
    def settings(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Template:
        with serialized(request):
            vault = appliance_of(request).vaults.get(caller(request), vault_id)
        return page(request, "vault_settings.html", vault=vault)

    @post("/{vault_id:str}/rename", status_code=200, sync_to_thread=True)
    def rename(self, request: Request[Any, Any, Any], vault_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        name = text(data, "name", 400)
        try:
            with serialized(request):
                app.vaults.rename(caller(request), vault_id, name)
        except ClientError as exc:
            with serialized(request):
                vault = app.vaults.get(caller(request), vault_id)
            return page(
                request, "vault_settings.html", status=exc.status, error=explain(request, exc), vault=vault, name=name
            )
        return see_other(f"/vaults/{vault_id}/settings", "vault_renamed")

    @post("/{vault_id:str}/rotate", status_code=200, sync_to_thread=True)
    def rotate_key(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Response[Any]:
        """Rotate the vault key now (a vault administrator; a key job of kind vault)."""
        app = appliance_of(request)
        try:
            with serialized(request):
                principal = caller(request)
                app.keyops.vault_rotation(principal, vault_id, principal.user_id)
        except ClientError as exc:
            with serialized(request):
                vault = app.vaults.get(caller(request), vault_id)
            return page(request, "vault_settings.html", status=exc.status, error=explain(request, exc), vault=vault)
        return see_other(f"/vaults/{vault_id}/settings", "vault_key_rotated")

    @get("/{vault_id:str}/delete", sync_to_thread=True)
    def confirm_delete(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Template:
        with serialized(request):
            vault = appliance_of(request).vaults.get(caller(request), vault_id)
        return page(request, "vault_delete.html", vault=vault)

    @post("/{vault_id:str}/delete", status_code=200, sync_to_thread=True)
    def delete(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Response[Any]:
        with serialized(request):
            appliance_of(request).vaults.delete(caller(request), vault_id)
        return see_other("/vaults", "vault_deleted")
