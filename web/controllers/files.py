"""Files in vaults: raw streamed uploads, streamed (ranged) downloads."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.errors import RangeNotSatisfiable
from appliance.files import FileView
from web.deps import iso, principal, serialized
from web.file_schemas import FileOut
from web.streaming import attachment, declared_length, gated, parse_range, pump, refuse_form


def file_out(f: FileView) -> FileOut:
    return FileOut(
        id=f.id,
        name=f.name,
        size=f.size,
        sha256=f.sha256,
        version=f.version,
        vault_id=f.vault_id,
        folder_id=f.folder_id,
        content_type=f.content_type,
        created_at=iso(f.created_at),
        updated_at=iso(f.updated_at),
    )


class FilesController(Controller):
    path = "/api/v1"
    tags = ["files"]

    @post(
        "/vaults/{vault_id:str}/files",
        status_code=HTTP_201_CREATED,
        operation_id="uploadFile",
        request_max_body_size=None,
    )
    async def upload(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        vault_id: FromPath[str],
        name: FromQuery[str],
        folder_id: FromQuery[str | None] = None,
    ) -> FileOut:
        """The body is the file's bytes (`Content-Type: application/octet-stream`), streamed."""
        refuse_form(request)
        size = declared_length(request)
        upload = await gated(
            request,
            lambda: appliance.files.begin_upload(principal(request), vault_id, name, folder_id, None, size),
        )
        await pump(request, upload)
        return file_out(await gated(request, upload.finish))

    @put(
        "/files/{file_id:str}/content",
        status_code=HTTP_200_OK,
        operation_id="replaceFileContent",
        request_max_body_size=None,
    )
    async def replace(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], file_id: FromPath[str]
    ) -> FileOut:
        """A new version of the file (the previous ones are kept, up to `[files] keep_versions`)."""
        refuse_form(request)
        size = declared_length(request)
        upload = await gated(request, lambda: appliance.files.begin_replace(principal(request), file_id, None, size))
        await pump(request, upload)
        return file_out(await gated(request, upload.finish))

    @get("/vaults/{vault_id:str}/files", operation_id="listFiles", sync_to_thread=True)
    def list_files(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], vault_id: FromPath[str]
    ) -> list[FileOut]:
        with serialized(request):
            return [file_out(f) for f in appliance.files.list_files(principal(request), vault_id)]

    @get("/files/{file_id:str}", operation_id="getFile", sync_to_thread=True)
    def get_file(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], file_id: FromPath[str]
    ) -> FileOut:
        with serialized(request):
            return file_out(appliance.files.get(principal(request), file_id))

    @get("/files/{file_id:str}/content", operation_id="downloadFile")
    async def content(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], file_id: FromPath[str]
    ) -> Response[Any]:
        """The bytes (`Range: bytes=a-b` answers 206 with only the chunks it needs decrypted)."""
        download = await gated(request, lambda: appliance.files.open_download(principal(request), file_id))
        try:
            wanted = parse_range(request.headers.get("range"), download.size)
        except RangeNotSatisfiable:
            download.close()
            return Response(
                content={
                    "status_code": 416,
                    "error": "range_not_satisfiable",
                    "detail": f"the file has {download.size} bytes",
                },
                status_code=416,
                headers={"Content-Range": f"bytes */{download.size}", "Accept-Ranges": "bytes"},
            )
        try:
            if wanted is None:
                await anyio.to_thread.run_sync(download.prepare)
            else:
                await anyio.to_thread.run_sync(download.prepare, *wanted)
        except BaseException:
            download.close()
            raise
        headers = {
            "Content-Length": str(download.length),
            "Content-Disposition": attachment(download.name),
            "Accept-Ranges": "bytes",
            "X-Content-SHA256": download.sha256,
        }
        if wanted is not None:
            headers["Content-Range"] = f"bytes {download.start}-{download.end}/{download.size}"
        return Stream(
            download.chunks(),
            status_code=206 if wanted is not None else 200,
            media_type="application/octet-stream",
            headers=headers,
        )

    @delete("/files/{file_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="deleteFile", sync_to_thread=True)
    def delete_file(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], file_id: FromPath[str]
    ) -> None:
        """The file, every kept version, their wrapped keys and their content."""
        with serialized(request):
            appliance.files.delete(principal(request), file_id)
