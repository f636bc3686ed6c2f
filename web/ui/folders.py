"""Folders in the portal: create, rename, move, delete, and the access screen
vault administrators use (every check lives in appliance.folders)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template

from appliance.errors import ClientError, NotFound
from appliance.folders import FolderView
from appliance.folders.service import UNSET
from web.deps import serialized
from web.ui.forms import Form, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller

ACCESS = ("inherit", "full", "read", "none")


def folder_options(folders: list[FolderView], exclude: str | None = None) -> list[tuple[str, str]]:
    """(id, indented name) for a folder <select>, without ``exclude`` and what is under it."""
    out, skip_depth = [], None
    for f in folders:
        if skip_depth is not None and f.depth > skip_depth:
            continue
        skip_depth = None
        if f.id == exclude:
            skip_depth = f.depth
            continue
        out.append((f.id, "\u2003" * (f.depth - 1) + f.name))
    return out


class FolderPages(Controller):
    path = "/"
    include_in_schema = False

    def _folder_page(
        self, request: Request[Any, Any, Any], folder_id: str, status: int = 200, **extra: Any
    ) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            vault_id = app.folders.vault_of(principal, folder_id)
            vault = app.vaults.get(principal, vault_id)
            folders = app.folders.list_folders(principal, vault_id)
        current = next((f for f in folders if f.id == folder_id), None)
        if current is None:
            raise NotFound("no such folder")
        return page(
            request,
            "folder.html",
            status=status,
            vault=vault,
            folder=current,
            parents=folder_options(folders, exclude=folder_id),
            **extra,
        )

    @post("/vaults/{vault_id:str}/folders", status_code=200, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any], vault_id: FromPath[str], data: Form) -> Response[Any]:
        parent = text(data, "parent_id", 64) or None
        try:
            with serialized(request):
                made = appliance_of(request).folders.create(caller(request), vault_id, text(data, "name", 400), parent)
        except ClientError as exc:
            return see_other(f"/vaults/{vault_id}" + (f"?folder={parent}" if parent else ""), _flash(exc))
        return see_other(f"/vaults/{vault_id}?folder={made.id}", "folder_created")

    @get("/folders/{folder_id:str}", sync_to_thread=True)
    def folder(self, request: Request[Any, Any, Any], folder_id: FromPath[str]) -> Template:
        return self._folder_page(request, folder_id)

    @post("/folders/{folder_id:str}", status_code=200, sync_to_thread=True)
    def update(self, request: Request[Any, Any, Any], folder_id: FromPath[str], data: Form) -> Response[Any]:
        """Rename (``name``) or move (``parent_id``, "" for the vault root)."""
        name = text(data, "name", 400) if "name" in data else UNSET
        parent = (text(data, "parent_id", 64) or None) if "parent_id" in data else UNSET
        try:
            with serialized(request):
                appliance_of(request).folders.update(caller(request), folder_id, name, parent)
        except ClientError as exc:
            return self._folder_page(request, folder_id, status=exc.status, error=explain(request, exc))
        return see_other(f"/folders/{folder_id}", "folder_saved")

    @post("/folders/{folder_id:str}/delete", status_code=200, sync_to_thread=True)
    def delete(self, request: Request[Any, Any, Any], folder_id: FromPath[str]) -> Response[Any]:
        app = appliance_of(request)
        try:
            with serialized(request):
                principal = caller(request)
                vault_id = app.folders.vault_of(principal, folder_id)
                app.folders.delete(principal, folder_id)
        except ClientError as exc:
            return self._folder_page(request, folder_id, status=exc.status, error=explain(request, exc))
        return see_other(f"/vaults/{vault_id}", "folder_deleted")

    def _access_page(
        self, request: Request[Any, Any, Any], folder_id: str, status: int = 200, **extra: Any
    ) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            vault_id = app.folders.vault_of(principal, folder_id)
            vault = app.vaults.get(principal, vault_id)
            access = app.folders.list_access(principal, folder_id)
            folders = app.folders.list_folders(principal, vault_id)
        current = next(f for f in folders if f.id == folder_id)
        return page(
            request,
            "folder_access.html",
            status=status,
            vault=vault,
            folder=current,
            access=access,
            levels=ACCESS,
            **extra,
        )

    @get("/folders/{folder_id:str}/access", sync_to_thread=True)
    def access(self, request: Request[Any, Any, Any], folder_id: FromPath[str]) -> Template:
        return self._access_page(request, folder_id)

    @post("/folders/{folder_id:str}/access", status_code=200, sync_to_thread=True)
    def set_access(self, request: Request[Any, Any, Any], folder_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        user_id, level = text(data, "user_id", 64), text(data, "access", 16)
        try:
            with serialized(request):
                principal = caller(request)
                if level == "inherit":
                    app.folders.clear_access(principal, folder_id, user_id)
                else:
                    app.folders.set_access(principal, folder_id, user_id, level)
        except ClientError as exc:
            return self._access_page(request, folder_id, status=exc.status, error=explain(request, exc))
        return see_other(f"/folders/{folder_id}/access", "folder_access_saved")


def _flash(exc: ClientError) -> str:
    return "folder_refused" if exc.status in (403, 409, 422) else "folder_not_found"
