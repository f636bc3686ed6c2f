"""Sending a password: the form, the "Sent" and "Received" lists, and the public
page a recipient opens (/s/{token}: a Reveal button; only the POST reveals)."""

from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template

from appliance.errors import ClientError, Forbidden, ValidationFailed
from web.controllers.sends import public_link
from web.deps import client_addr, serialized
from web.ui.forms import Form, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller

MODES = ("user", "code", "link")


def _number(data: dict[str, Any], name: str) -> int | None | str:
    """A whole number from the form, None when empty, the raw text when not a number."""
    raw = text(data, name, 12).strip()
    if not raw:
        return None
    # ASCII digits only: "²" passes str.isdigit() and int() refuses it (a 500), "٣" is 3.
    return int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) else raw


class SendPages(Controller):
    path = "/"
    include_in_schema = False

    # -- the sender ----------------------------------------------------------------------

    def _form(self, request: Request[Any, Any, Any], item_id: str | None, status: int = 200, **extra: Any) -> Template:
        app = appliance_of(request)
        item = None
        with serialized(request):
            who = caller(request)
            if item_id:
                item = app.items.get(who, item_id)
        policy = app.settings.sends
        values = extra.pop("values", {})
        return page(
            request,
            "send_form.html",
            status=status,
            item=item,
            values=values,
            policy=policy,
            mail=app.mail.enabled,
            # Who may send to an address with no account (see SendsService._to_user).
            can_invite=app.mail.enabled or who.is_admin,
            **extra,
        )

    @get("/sends/new", sync_to_thread=True)
    def new(self, request: Request[Any, Any, Any]) -> Template:
        item_id = request.query_params.get("item_id") or None
        return self._form(request, item_id)

    @post("/sends", status_code=200, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        item_id = text(data, "item_id", 64) or None
        mode = text(data, "mode", 8)
        values = {
            "mode": mode,
            "recipient_email": text(data, "recipient_email", 320),
            "expires_in_hours": text(data, "expires_in_hours", 12),
            "max_views": text(data, "max_views", 12),
        }
        try:
            expires, views = _number(data, "expires_in_hours"), _number(data, "max_views")
            if isinstance(expires, str) or isinstance(views, str):
                raise ValidationFailed("expires_in_hours must be a whole number")
            if mode not in MODES:
                raise ValidationFailed('mode must be "user", "code" or "link"')
            with serialized(request):
                created = app.sends.create(
                    caller(request),
                    mode=mode,
                    item_id=item_id,
                    secret=None if item_id else (text(data, "secret", 4096) or ""),
                    recipient_email=values["recipient_email"].strip() or None,
                    expires_in_hours=expires,
                    max_views=views,
                )
        except ClientError as exc:
            return self._form(request, item_id, status=exc.status, error=explain(request, exc), values=values)
        # Shown once, in this answer (no-store): the link, the code, an invitation to pass on.
        return page(
            request,
            "send_created.html",
            mode=mode,
            url=None if created.path is None else public_link(request, created.path),
            code=created.code,
            invitation=None if created.invitation_path is None else public_link(request, created.invitation_path),
            mailed=created.mailed,
            recipient=values["recipient_email"].strip(),
        )

    @get("/sends", sync_to_thread=True)
    def sent(self, request: Request[Any, Any, Any]) -> Template:
        with serialized(request):
            sends = appliance_of(request).sends.list_sent(caller(request))
        return page(request, "sends.html", sends=sends)

    @post("/sends/{send_id:str}/revoke", status_code=200, sync_to_thread=True)
    def revoke(self, request: Request[Any, Any, Any], send_id: FromPath[str]) -> Response[Any]:
        with serialized(request):
            appliance_of(request).sends.revoke(caller(request), send_id)
        return see_other("/sends", "send_revoked")

    # -- a user recipient ------------------------------------------------------------------

    @get("/received", sync_to_thread=True)
    def received(self, request: Request[Any, Any, Any]) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            received = app.sends.list_received(principal)
            vaults = [v for v in app.vaults.list_vaults(principal) if v.role in ("admin", "write")]
        return page(request, "received.html", received=received, vaults=vaults)

    @post("/received/{send_id:str}/save", status_code=200, sync_to_thread=True)
    def save(self, request: Request[Any, Any, Any], send_id: FromPath[str], data: Form) -> Response[Any]:
        with serialized(request):
            item = appliance_of(request).sends.save(caller(request), send_id, text(data, "vault_id", 64))
        return see_other(f"/items/{item.id}", "received_saved")

    @post("/received/{send_id:str}/discard", status_code=200, sync_to_thread=True)
    def discard(self, request: Request[Any, Any, Any], send_id: FromPath[str]) -> Response[Any]:
        with serialized(request):
            appliance_of(request).sends.discard(caller(request), send_id)
        return see_other("/received", "received_discarded")

    # -- the public page -----------------------------------------------------------------------

    @get("/s/{token:str}", sync_to_thread=True)
    def public(self, request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
        """Consumes nothing: link previewers and mail scanners open every GET."""
        mode = appliance_of(request).sends.open_page(token, client_addr(request))
        return page(request, "send_public.html", token=token, mode=mode, fields=None)

    @post("/s/{token:str}", status_code=200, sync_to_thread=True)
    def reveal(self, request: Request[Any, Any, Any], token: FromPath[str], data: Form) -> Template:
        app = appliance_of(request)
        code = text(data, "code", 64)
        try:
            fields = app.sends.reveal(token, code or None, client_addr(request))
        except Forbidden as exc:
            return page(
                request,
                "send_public.html",
                status=403,
                token=token,
                mode="code",
                fields=None,
                error=explain(request, exc),
            )
        return page(request, "send_public.html", token=token, mode=None, fields=fields)
