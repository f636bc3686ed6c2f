"""Transfers to outsiders: the sender's API, and the public API of a link."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.transfers import TransferFileView, TransferView
from web import file_schemas as fs
from web.deps import client_addr, iso, over_unix_socket, principal, serialized, strict_body
from web.streaming import attachment, declared_length, gated, pump, refuse_form


def public_base(request: Request[Any, Any, Any]) -> str:
    """Links are https behind Apache (requests over the Unix socket)."""
    scheme = "https" if over_unix_socket(request.scope) else request.base_url.scheme
    return f"{scheme}://{request.base_url.netloc}"


def _file(f: TransferFileView) -> fs.TransferFileOut:
    return fs.TransferFileOut(id=f.id, name=f.name, size=f.size, sha256=f.sha256)


def _transfer(t: TransferView) -> fs.TransferOut:
    return fs.TransferOut(
        id=t.id,
        status=t.status,
        created_at=iso(t.created_at),
        sent_at=iso(t.sent_at) if t.sent_at else None,
        expires_at=iso(t.expires_at),
        max_downloads=t.max_downloads,
        file_count=t.file_count,
        total_bytes=t.total_bytes,
        failed_passwords=t.failed_passwords,
        recipients=[
            fs.RecipientOut(
                email=r.email,
                downloads=r.downloads,
                receipts=[fs.ReceiptOut(kind=e.kind, at=iso(e.at), address=e.client_addr) for e in r.events],
            )
            for r in t.recipients
        ],
    )


class TransfersController(Controller):
    path = "/api/v1/transfers"
    tags = ["transfers"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createTransfer")
    async def create(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], data: JSONBody[fs.TransferIn]
    ) -> fs.TransferCreated:
        """A draft transfer protected by the sender's password (Argon2id runs outside the work gate)."""
        body = strict_body(request, fs.TransferIn)

        def run() -> str:
            with serialized(request):
                caller = principal(request)
            return appliance.transfers.create(
                caller,
                body.recipients,
                body.message,
                body.password,
                body.email_codes,
                body.expires_in_hours,
                body.max_downloads,
                body.notify_downloads,
            )

        return fs.TransferCreated(id=await anyio.to_thread.run_sync(run))

    @put(
        "/{transfer_id:str}/files",
        status_code=HTTP_201_CREATED,
        operation_id="uploadTransferFile",
        request_max_body_size=None,
    )
    async def upload(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        transfer_id: FromPath[str],
        name: FromQuery[str],
    ) -> fs.TransferFileOut:
        """The body is the file's bytes, streamed (a draft transfer only)."""
        refuse_form(request)
        size = declared_length(request)
        upload = await gated(
            request, lambda: appliance.transfers.begin_upload(principal(request), transfer_id, name, size)
        )
        await pump(request, upload)
        return _file(await gated(request, upload.finish))

    @post("/{transfer_id:str}/files", status_code=HTTP_201_CREATED, operation_id="addTransferFileFromVault")
    async def add_from_vault(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        transfer_id: FromPath[str],
        data: JSONBody[fs.TransferFileIn],
    ) -> fs.TransferFileOut:
        """Copy a file of a vault the sender can read into the transfer."""
        body = strict_body(request, fs.TransferFileIn)
        caller = await gated(request, lambda: principal(request))
        view = await anyio.to_thread.run_sync(
            lambda: appliance.transfers.add_from_vault(caller, transfer_id, body.file_id)
        )
        return _file(view)

    @post("/{transfer_id:str}/send", status_code=HTTP_200_OK, operation_id="sendTransfer", sync_to_thread=True)
    def send(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], transfer_id: FromPath[str]
    ) -> fs.SendOut:
        """The links, one per recipient (the sender passes them on, with the password out of band)."""
        with serialized(request):
            links = appliance.transfers.send(principal(request), transfer_id, public_base(request))
        return fs.SendOut(links=[fs.LinkOut(recipient=e, url=u) for e, u in links])

    @get("/", operation_id="listTransfers", sync_to_thread=True)
    def list_mine(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[fs.TransferOut]:
        """My transfers, with each recipient's receipts (opens, unlocks, downloads: when, from where)."""
        with serialized(request):
            return [_transfer(t) for t in appliance.transfers.list_mine(principal(request))]

    @delete("/{transfer_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="revokeTransfer", sync_to_thread=True)
    def revoke(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], transfer_id: FromPath[str]
    ) -> None:
        """Revoke: the transfer's keys and content are destroyed (crypto-shred)."""
        with serialized(request):
            appliance.transfers.revoke(principal(request), transfer_id)


class PublicTransfersController(Controller):
    path = "/api/v1/public/transfers"
    tags = ["public"]

    @post("/{token:str}/unlock", status_code=HTTP_200_OK, operation_id="unlockTransfer", sync_to_thread=True)
    def unlock(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        token: FromPath[str],
        data: JSONBody[fs.UnlockIn],
    ) -> fs.UnlockOut:
        """The sender's password opens the transfer: its files and a short-lived download token.
        Every refusal (unknown, expired, used up, revoked, locked, wrong password) is the same 404."""
        body = strict_body(request, fs.UnlockIn)
        done = appliance.transfer_access.unlock(token, body.password, body.code, client_addr(request))
        return fs.UnlockOut(
            files=[fs.PublicFileOut(id=i, name=n, size=s) for i, n, s in done.files],
            download_token=done.download_token,
            expires_at=iso(done.expires_at),
            message=done.message,
        )

    @get("/{token:str}/files/{file_id:str}", operation_id="downloadTransferFile")
    async def download(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        token: FromPath[str],
        file_id: FromPath[str],
        download_token: FromQuery[str],
    ) -> Response[Any]:
        """One file (one download off the recipient's allowance). `file_id` `all` is every file as one zip."""
        addr = client_addr(request)
        if file_id == "all":
            name, chunks = await gated(
                request, lambda: appliance.transfer_access.download_zip(token, download_token, addr)
            )
            return Stream(chunks, media_type="application/zip", headers={"Content-Disposition": attachment(name)})
        d, stream = await gated(
            request, lambda: appliance.transfer_access.download(token, file_id, download_token, addr)
        )
        return Stream(
            stream,
            media_type="application/octet-stream",
            headers={"Content-Length": str(d.length), "Content-Disposition": attachment(d.name)},
        )
