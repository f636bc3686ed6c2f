"""Deposit boxes: a member's upload link for outsiders, and the public upload."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from appliance.core import Appliance
from appliance.transfers.deposits import DepositView
from web import file_schemas as fs
from web.controllers.transfers import public_base
from web.deps import client_addr, iso, principal, serialized, strict_body
from web.streaming import declared_length, gated, pump, refuse_form

PASSWORD_HEADER = "x-deposit-password"  # noqa: S105 - a header name


def _out(d: DepositView) -> fs.DepositOut:
    return fs.DepositOut(
        id=d.id,
        vault_id=d.vault_id,
        status=d.status,
        created_at=iso(d.created_at),
        closes_at=iso(d.closes_at) if d.closes_at else None,
        max_bytes=d.max_bytes,
        used_bytes=d.used_bytes,
        pending=d.pending,
    )


class DepositsController(Controller):
    path = "/api/v1/deposits"
    tags = ["deposits"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createDeposit", sync_to_thread=True)
    def create(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], data: JSONBody[fs.DepositIn]
    ) -> fs.DepositCreated:
        """An upload link into a vault you can write to (optional password, closing date, size limit)."""
        body = strict_body(request, fs.DepositIn)
        with serialized(request):
            caller = principal(request)
        box_id, url = appliance.deposits.create(
            caller, body.vault_id, body.folder_id, body.password, body.closes_at, body.max_bytes, public_base(request)
        )
        return fs.DepositCreated(id=box_id, url=url)

    @get("/", operation_id="listDeposits", sync_to_thread=True)
    def list_mine(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State]
    ) -> list[fs.DepositOut]:
        with serialized(request):
            return [_out(d) for d in appliance.deposits.list_mine(principal(request))]

    @delete("/{deposit_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="closeDeposit", sync_to_thread=True)
    def close(
        self, appliance: NamedDependency[Appliance], request: Request[Any, Any, State], deposit_id: FromPath[str]
    ) -> None:
        """Close the box: its link stops working; what was deposited stays for the vault's members."""
        with serialized(request):
            appliance.deposits.close(principal(request), deposit_id)


class PublicDepositsController(Controller):
    path = "/api/v1/public/deposits"
    tags = ["public"]

    @put(
        "/{token:str}/files",
        status_code=HTTP_201_CREATED,
        operation_id="uploadDeposit",
        request_max_body_size=None,
    )
    async def deposit(
        self,
        appliance: NamedDependency[Appliance],
        request: Request[Any, Any, State],
        token: FromPath[str],
        name: FromQuery[str],
    ) -> fs.DepositedOut:
        """The body is the file's bytes, streamed; the box's password (if it has one) in
        `X-Deposit-Password`. Every refusal is the same 404."""
        refuse_form(request)
        size = declared_length(request)
        password = request.headers.get(PASSWORD_HEADER)
        addr = client_addr(request)
        upload = await gated(request, lambda: appliance.deposits.begin(token, name, password, size, addr))
        await pump(request, upload)
        _, stored_name, stored_size = await gated(request, upload.finish)
        return fs.DepositedOut(name=stored_name, size=stored_size)
