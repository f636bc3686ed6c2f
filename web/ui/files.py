"""A vault's files: the list, upload (streamed by the page's script), download,
delete; deposit links into the vault. Role checks live in appliance.files."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Response, Stream, Template

from appliance.errors import ClientError
from web.controllers.files import file_out
from web.controllers.transfers import public_base
from web.deps import serialized
from web.file_schemas import FileOut
from web.streaming import attachment, declared_length, gated, pump, refuse_form
from web.ui.forms import Form, digits, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller


def _files_page(request: Request[Any, Any, Any], vault_id: str, **extra: Any) -> Template:
    app = appliance_of(request)
    with serialized(request):
        principal = caller(request)
        vault = app.vaults.get(principal, vault_id)
        files = app.files.list_files(principal, vault_id)
        boxes = [b for b in app.deposits.list_mine(principal) if b.vault_id == vault_id]
        folders = app.folders.list_folders(principal, vault_id)
    names = {f.id: f.name for f in folders}
    writable = [f for f in folders if f.access == "full"]
    return page(
        request, "files.html", vault=vault, files=files, boxes=boxes, folders=writable, folder_names=names, **extra
    )


class FilePages(Controller):
    path = "/"
    include_in_schema = False

    @get("/vaults/{vault_id:str}/files", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any], vault_id: FromPath[str]) -> Template:
        return _files_page(request, vault_id)

    @post("/vaults/{vault_id:str}/files/upload", status_code=201, request_max_body_size=None)
    async def upload(
        self,
        request: Request[Any, Any, Any],
        vault_id: FromPath[str],
        name: FromQuery[str],
        folder_id: FromQuery[str | None] = None,
    ) -> FileOut:
        """The page's script sends the file itself as the body (X-CSRF-Token header)."""
        refuse_form(request)
        size = declared_length(request)
        app = appliance_of(request)
        folder = folder_id or None
        upload = await gated(
            request, lambda: app.files.begin_upload(caller(request), vault_id, name, folder, None, size)
        )
        await pump(request, upload)
        return file_out(await gated(request, upload.finish))

    @get("/files/{file_id:str}/download")
    async def download(self, request: Request[Any, Any, Any], file_id: FromPath[str]) -> Response[Any]:
        app = appliance_of(request)
        d = await gated(request, lambda: app.files.open_download(caller(request), file_id))
        try:
            await anyio.to_thread.run_sync(d.prepare)
        except BaseException:
            d.close()
            raise
        headers = {"Content-Length": str(d.length), "Content-Disposition": attachment(d.name)}
        return Stream(d.chunks(), media_type="application/octet-stream", headers=headers)

    @post("/files/{file_id:str}/delete", status_code=200, sync_to_thread=True)
    def delete(self, request: Request[Any, Any, Any], file_id: FromPath[str]) -> Response[Any]:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            vault_id = app.files.get(principal, file_id).vault_id
            app.files.delete(principal, file_id)
        return see_other(f"/vaults/{vault_id}/files", "file_deleted")

    @post("/vaults/{vault_id:str}/deposits", status_code=200, sync_to_thread=True)
    def new_deposit(self, request: Request[Any, Any, Any], vault_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        password = text(data, "password", 1100) or None
        days = text(data, "days", 10)
        megabytes = text(data, "max_mb", 20)
        try:
            closes = None
            if days:
                from datetime import UTC, datetime

                if not digits(days) or not 1 <= int(days) <= 365:
                    raise ClientError("days must be a whole number from 1 to 365")
                closes = datetime.fromtimestamp(app.clock() + int(days) * 86400, UTC).isoformat()
            if megabytes and not digits(megabytes):
                raise ClientError("max_mb must be a whole number")
            limit = int(megabytes) * 1_000_000 if megabytes else None
            with serialized(request):
                principal = caller(request)
            _, url = app.deposits.create(principal, vault_id, None, password, closes, limit, public_base(request))
        except ClientError as exc:
            return _files_page(request, vault_id, status=exc.status, error=explain(request, exc))
        return _files_page(request, vault_id, deposit_url=url)

    @post("/deposits/{box_id:str}/close", status_code=200, sync_to_thread=True)
    def close_deposit(self, request: Request[Any, Any, Any], box_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        vault_id = text(data, "vault_id", 40)
        with serialized(request):
            app.deposits.close(caller(request), box_id)
        return see_other(f"/vaults/{vault_id}/files" if vault_id.isalnum() else "/vaults", "deposit_closed")
