"""My account: change password or PIN, active sessions, log out."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Response, Template

from appliance import my_sessions
from appliance.errors import ClientError, Unauthorized, ValidationFailed
from web.deps import serialized
from web.ui.forms import Form, checked, text
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
            with serialized(request):
                app.accounts.change_password(
                    caller(request),
                    text(data, "current_password", 2048),
                    new,
                    end_other_sessions=checked(data, "end_other_sessions"),
                )
        except ClientError as exc:
            return self._page(request, exc.status, error=explain(request, exc))
        return see_other("/account", "password_changed")

    @post("/pin", status_code=200, sync_to_thread=True)
    def change_pin(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        """A new PIN (and a new key pair): this session stays open, the others end."""
        app = appliance_of(request)
        new = text(data, "new_pin", 64)
        try:
            if new != text(data, "new_pin_confirm", 64):
                raise ValidationFailed("the two PINs differ")
            with serialized(request):
                app.userkeys.change_pin(caller(request), text(data, "current_pin", 64), new)
        except Unauthorized as exc:
            if exc.message == "wrong PIN":  # counted like a wrong PIN at unlock
                return self._page(request, exc.status, error=explain(request, exc))
            raise
        except ClientError as exc:
            return self._page(request, exc.status, error=explain(request, exc))
        return see_other("/account", "pin_changed")

    @post("/sessions/{session_id:str}/revoke", status_code=200, sync_to_thread=True)
    def revoke(self, request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[Any]:
        with serialized(request):
            principal = caller(request)
            my_sessions.revoke_session(appliance_of(request), principal, session_id)
        if session_id == principal.session_id:
            return see_other("/login", "logged_out", cookies=[expired(SESSION_COOKIE)])
        return see_other("/account", "session_revoked")
