"""Members of a vault: list, add, change role, remove (which rotates the vault key)."""

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

ROLES = ("admin", "write", "read")


class MemberPages(Controller):
    path = "/vaults/{vault_id:str}/members"
    include_in_schema = False

    def _page(self, request: Request[Any, Any, Any], vault_id: str, status: int = 200, **extra: Any) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            vault = app.vaults.get(principal, vault_id)
            members = app.vaults.members(principal, vault_id)
        admins = sum(1 for m in members if m.role == "admin")
        return page(
            request, "members.html", status=status, vault=vault, members=members, roles=ROLES, admins=admins, **extra
        )

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Template:
        return self._page(request, vault_id)

    @post("/", status_code=200, sync_to_thread=True)
    def add(self, request: Request[Any, Any, Any], vault_id: FromPath[str], data: Form) -> Response[Any]:
        email, role = text(data, "email", 320), text(data, "role", 16)
        try:
            with serialized(request):
                appliance_of(request).vaults.add_member(caller(request), vault_id, email, role)
        except ClientError as exc:
            return self._page(request, vault_id, exc.status, error=explain(request, exc), email=email, chosen_role=role)
        return see_other(f"/vaults/{vault_id}/members", "member_added")

    @post("/{user_id:str}/role", status_code=200, sync_to_thread=True)
    def change_role(
        self, request: Request[Any, Any, Any], vault_id: FromPath[str], user_id: FromPath[str], data: Form
    ) -> Response[Any]:
        try:
            with serialized(request):
                appliance_of(request).vaults.change_role(caller(request), vault_id, user_id, text(data, "role", 16))
        except ClientError as exc:
            return self._page(request, vault_id, exc.status, error=explain(request, exc))
        return see_other(f"/vaults/{vault_id}/members", "member_changed")

    @get("/{user_id:str}/remove", sync_to_thread=True)
    def confirm_remove(
        self, request: Request[Any, Any, Any], vault_id: FromPath[str], user_id: FromPath[str]
    ) -> Response[Any]:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            vault = app.vaults.get(principal, vault_id)
            members = app.vaults.members(principal, vault_id)
        member = next((m for m in members if m.user_id == user_id), None)
        if member is None:
            return see_other(f"/vaults/{vault_id}/members")
        return page(request, "member_remove.html", vault=vault, member=member)

    @post("/{user_id:str}/remove", status_code=200, sync_to_thread=True)
    def remove(self, request: Request[Any, Any, Any], vault_id: FromPath[str], user_id: FromPath[str]) -> Response[Any]:
        try:
            with serialized(request):
                appliance_of(request).vaults.remove_member(caller(request), vault_id, user_id)
        except ClientError as exc:
            return self._page(request, vault_id, exc.status, error=explain(request, exc))
        return see_other(f"/vaults/{vault_id}/members", "member_removed")
