"""Transfers: the sender's screens (new, add files, send, receipts, revoke) and the
public pages of a transfer link (/t/{token}) and of a deposit link (/d/{token})."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Response, Template

from appliance.errors import ClientError, NotFound
from web.controllers.transfers import public_base
from web.deps import client_addr, serialized
from web.file_schemas import TransferFileOut
from web.streaming import declared_length, gated, pump, refuse_form
from web.ui.forms import Form, digits, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller


def _transfer_page(request: Request[Any, Any, Any], transfer_id: str, **extra: Any) -> Template:
    app = appliance_of(request)
    with serialized(request):
        principal = caller(request)
        transfer = app.transfers.get(principal, transfer_id)
        files = app.transfers.draft_files(principal, transfer_id) if transfer.status == "draft" else []
        vault_files = []
        if transfer.status == "draft":
            for vault in app.vaults.list_vaults(principal):
                vault_files += [(vault.name, f) for f in app.files.list_files(principal, vault.id)]
    return page(request, "transfer.html", transfer=transfer, files=files, vault_files=vault_files, **extra)


class TransferPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/transfers", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any]) -> Template:
        with serialized(request):
            transfers = appliance_of(request).transfers.list_mine(caller(request))
        return page(request, "transfers.html", transfers=transfers)

    @get("/transfers/new", sync_to_thread=True)
    def new(self, request: Request[Any, Any, Any]) -> Template:
        caller(request)
        return page(request, "transfer_new.html", form={}, mail_enabled=appliance_of(request).mail.enabled)

    @post("/transfers", status_code=200, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        form = {k: text(data, k, 5000) for k in ("recipients", "message", "days", "max_downloads")}
        password = text(data, "password", 1100) or None
        codes = text(data, "email_codes", 10) == "on"
        recipients = [r.strip() for r in form["recipients"].replace(",", "\n").splitlines() if r.strip()]
        try:
            days, downloads = form["days"] or "7", form["max_downloads"] or "3"
            if not digits(days) or not digits(downloads):
                raise ClientError("days and downloads must be whole numbers")
            with serialized(request):
                principal = caller(request)
            tid = app.transfers.create(
                principal, recipients, form["message"] or None, password, codes, int(days) * 24, int(downloads)
            )
        except ClientError as exc:
            return page(
                request,
                "transfer_new.html",
                status=exc.status,
                error=explain(request, exc),
                form=form,
                mail_enabled=app.mail.enabled,
            )
        return see_other(f"/transfers/{tid}", "transfer_created")

    @get("/transfers/{transfer_id:str}", sync_to_thread=True)
    def show(self, request: Request[Any, Any, Any], transfer_id: FromPath[str]) -> Template:
        return _transfer_page(request, transfer_id)

    @post("/transfers/{transfer_id:str}/upload", status_code=201, request_max_body_size=None)
    async def upload(
        self, request: Request[Any, Any, Any], transfer_id: FromPath[str], name: FromQuery[str]
    ) -> TransferFileOut:
        refuse_form(request)
        size = declared_length(request)
        app = appliance_of(request)
        upload = await gated(request, lambda: app.transfers.begin_upload(caller(request), transfer_id, name, size))
        await pump(request, upload)
        f = await gated(request, upload.finish)
        return TransferFileOut(id=f.id, name=f.name, size=f.size, sha256=f.sha256)

    @post("/transfers/{transfer_id:str}/add", status_code=200, sync_to_thread=True)
    def add(self, request: Request[Any, Any, Any], transfer_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        try:
            with serialized(request):
                principal = caller(request)
            app.transfers.add_from_vault(principal, transfer_id, text(data, "file_id", 40))
        except ClientError as exc:
            return _transfer_page(request, transfer_id, status=exc.status, error=explain(request, exc))
        return see_other(f"/transfers/{transfer_id}", "transfer_file_added")

    @post("/transfers/{transfer_id:str}/send", status_code=200, sync_to_thread=True)
    def send(self, request: Request[Any, Any, Any], transfer_id: FromPath[str]) -> Response[Any]:
        app = appliance_of(request)
        try:
            with serialized(request):
                links = app.transfers.send(caller(request), transfer_id, public_base(request))
        except ClientError as exc:
            return _transfer_page(request, transfer_id, status=exc.status, error=explain(request, exc))
        return _transfer_page(request, transfer_id, links=links)

    @post("/transfers/{transfer_id:str}/revoke", status_code=200, sync_to_thread=True)
    def revoke(self, request: Request[Any, Any, Any], transfer_id: FromPath[str]) -> Response[Any]:
        with serialized(request):
            appliance_of(request).transfers.revoke(caller(request), transfer_id)
        return see_other("/transfers", "transfer_revoked")

    # -- public pages -------------------------------------------------------------------------

    @get("/t/{token:str}", sync_to_thread=True)
    def public_transfer(self, request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
        """The link page: shows the password field; opening it consumes nothing."""
        access = appliance_of(request).transfer_access
        email = access.open_page(token, client_addr(request))
        password, code = access.needs(token)
        return page(
            request, "transfer_public.html", token=token, email=email, unlocked=None, password=password, code=code
        )

    @post("/t/{token:str}", status_code=200, sync_to_thread=True)
    def public_unlock(self, request: Request[Any, Any, Any], token: FromPath[str], data: Form) -> Template:
        app = appliance_of(request)
        try:
            done = app.transfer_access.unlock(
                token, text(data, "password", 1100), text(data, "code", 40), client_addr(request)
            )
        except NotFound:
            raise NotFound("no such page") from None
        return page(request, "transfer_public.html", token=token, email=None, unlocked=done, password=True, code=False)

    @get("/d/{token:str}", sync_to_thread=True)
    def public_deposit(self, request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
        has_password = appliance_of(request).deposits.check(token)
        return page(request, "deposit_public.html", token=token, has_password=has_password)
