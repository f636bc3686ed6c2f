"""Recovery screens: the deployment's recovery status (every user), an officer's
share pickup and approvals, an administrator's request (appliance/recovery)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template

from appliance.errors import ClientError, Conflict, NotFound
from web.deps import serialized
from web.ui.admin import _link
from web.ui.forms import Form, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import appliance_of, caller


class RecoveryPages(Controller):
    path = "/recovery"
    include_in_schema = False

    def _page(self, request: Request[Any, Any, Any], status: int = 200, **extra: Any) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            state = app.recovery.status()
            officer = principal.email in state.officers
            requests = []
            if state.enabled and (officer or principal.is_admin):
                requests = app.recovery_requests.list_requests(principal)
        return page(
            request,
            "recovery.html",
            status=status,
            state=state,
            officer=officer,
            pending=principal.email in state.pending_pickups,
            requests=requests,
            **extra,
        )

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any]) -> Template:
        return self._page(request)

    @post("/my-share", status_code=200, sync_to_thread=True)
    def my_share(self, request: Request[Any, Any, Any]) -> Template:
        """The share is shown in this answer only (no redirect, no cookie, no-store)."""
        app = appliance_of(request)
        try:
            with serialized(request):
                share = app.recovery.pickup(caller(request))
        except ClientError as exc:
            return self._page(request, exc.status, error=explain(request, exc))
        return self._page(request, share=share)

    @post("/requests", status_code=200, sync_to_thread=True)
    def open_request(self, request: Request[Any, Any, Any], data: Form) -> Template:
        app = appliance_of(request)
        email = text(data, "email", 320)
        try:
            with serialized(request):
                principal = caller(request)
                _, token = app.recovery_requests.open(principal, email, principal.client_addr)
        except ClientError as exc:
            return self._page(request, exc.status, error=explain(request, exc), email=email)
        return self._page(request, link=_link(request, "/reset", token), link_for=email)

    @post("/requests/{request_id:str}/shares", status_code=200, sync_to_thread=True)
    def submit(self, request: Request[Any, Any, Any], request_id: FromPath[str], data: Form) -> Response[Any]:
        app = appliance_of(request)
        try:
            with serialized(request):
                app.recovery_requests.submit(caller(request), request_id, text(data, "share", 1000))
        except (Conflict, NotFound, ClientError) as exc:
            return self._page(request, exc.status, error=explain(request, exc))
        return see_other("/recovery", "share_submitted")
