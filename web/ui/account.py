"""My account: change password, active sessions, log out."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template

from appliance import my_sessions
from appliance.errors import ClientError, ValidationFailed
from web.deps import serialized
from web.ui.forms import Form, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import SESSION_COOKIE, appliance_of, caller, expired


class AccountPages(Controller):
    path = "/account"
    include_in_schema = False

    def _page(self, request: Request[Any, Any, Any], status: int = 200, **extra: Any) -> Template:
        app = appliance_of(request)
        with serialized(request):
            principal = caller(request)
            me = app.accounts.me(principal)
            sessions = my_sessions.list_sessions(app, principal)
        return page(request, "account.html", status=status, me=me, sessions=sessions, **extra)

    @get("/", sync_to_thread=True)
    def index(self, request: Request[Any, Any, Any]) -> Template:
        return self._page(request)

    @post("/password", status_code=200, sync_to_thread=True)
    def change_password(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        new = text(data, "new_password", 2048)
        try:
            if new != text(data, "new_password_confirm", 2048):
                raise ValidationFailed("the two passwords differ")
            app.accounts.change_password(caller(request), text(data, "current_password", 2048), new)
        except ClientError as exc:
            return self._page(request, exc.status, error=explain(request, exc))
        # Every session of the account was closed, this one too.
        return see_other("/login", "password_changed", cookies=[expired(SESSION_COOKIE)])

    @post("/sessions/{session_id:str}/revoke", status_code=200, sync_to_thread=True)
    def revoke(self, request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[Any]:
        with serialized(request):
            principal = caller(request)
            my_sessions.revoke_session(appliance_of(request), principal, session_id)
        if session_id == principal.session_id:
            return see_other("/login", "logged_out", cookies=[expired(SESSION_COOKIE)])
        return see_other("/account", "session_revoked")
