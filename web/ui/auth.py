"""Enrollment, two-step login, logout, password reset, language, the idle lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from litestar.response import File, Redirect, Response, Template

from appliance.errors import AppError, ClientError, ValidationFailed
from appliance.passwords import check_password_strength
from appliance.pin_policy import pin_weakness
from web.deps import client_addr
from web.ui import i18n
from web.ui.forms import Form, local_path, text
from web.ui.messages import explain
from web.ui.render import page, see_other
from web.ui.session import (
    SESSION_COOKIE,
    TICKET_COOKIE,
    appliance_of,
    cookie,
    expired,
    optional_caller,
)

STATIC = Path(__file__).resolve().parent.parent / "static"


class AuthPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/", sync_to_thread=True)
    def home(self, request: Request[Any, Any, Any]) -> Redirect:
        return Redirect("/vaults" if optional_caller(request) else "/login", status_code=303)

    @get("/favicon.ico", sync_to_thread=False)
    def favicon(self) -> File:
        return File(STATIC / "favicon.svg", media_type="image/svg+xml", content_disposition_type="inline")

    @get("/login", sync_to_thread=False)
    def login_form(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "login.html")

    @post("/login", status_code=200, sync_to_thread=True)
    def login(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        email = text(data, "email", 320)
        try:
            ticket = app.accounts.login(email, text(data, "password", 2048), client_addr(request))
        except ClientError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else {}
            response = page(request, "login.html", status=exc.status, error=explain(request, exc), email=email)
            response.headers.update(headers)
            return response
        ttl = app.settings.security.login_ticket_ttl_seconds
        return see_other("/login/pin", cookies=[cookie(TICKET_COOKIE, ticket, max_age=ttl)])

    @get("/login/pin", sync_to_thread=False)
    def pin_form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if not request.cookies.get(TICKET_COOKIE):
            return see_other("/login")
        return page(request, "pin.html")

    @post("/login/pin", status_code=200, sync_to_thread=True)
    def unlock(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        ticket = request.cookies.get(TICKET_COOKIE, "")
        previous = optional_caller(request)
        try:
            token, _ = app.accounts.unlock(ticket, text(data, "pin", 64), client_addr(request))
        except ValidationFailed as exc:  # a malformed PIN does not use the ticket up
            return page(request, "pin.html", status=exc.status, error=explain(request, exc))
        except ClientError as exc:  # the ticket is spent: back to the password step
            return page(
                request, "login.html", status=exc.status, error=explain(request, exc), cookies=[expired(TICKET_COOKIE)]
            )
        if previous is not None:  # a shared computer: the last person's session ends here
            app.accounts.logout(previous)
        cookies = [cookie(SESSION_COOKIE, token), expired(TICKET_COOKIE)]
        if pin_weakness(text(data, "pin", 64)) is not None:  # set before the PIN policy: suggest a change
            return see_other("/account#pin-h", "pin_weak", cookies=cookies)
        return see_other("/vaults", cookies=cookies)

    @post("/logout", status_code=200, sync_to_thread=True)
    def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        principal = optional_caller(request)
        if principal is not None:
            appliance_of(request).accounts.logout(principal)
        return see_other("/login", "logged_out", cookies=[expired(SESSION_COOKIE)])

    @get("/locked", sync_to_thread=False)
    def locked(self, request: Request[Any, Any, Any]) -> Template:
        """Where the idle lock lands (the page already ended the session with a POST
        /logout). A GET changes nothing, so this page drops no cookie either."""
        return page(request, "locked.html")

    @get("/enroll", sync_to_thread=False)
    def enroll_form(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "enroll.html")

    @post("/enroll", status_code=200, sync_to_thread=True)
    def enroll(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        token = text(data, "token", 200).strip()
        try:
            if text(data, "pin", 64) != text(data, "pin_confirm", 64):
                raise ValidationFailed("the two PINs differ")
            app.accounts.enroll(token, text(data, "password", 2048), text(data, "pin", 64), client_addr(request))
        except ClientError as exc:
            return page(request, "enroll.html", status=exc.status, error=explain(request, exc), token=token)
        return see_other("/login", "enrolled")

    @get("/reset", sync_to_thread=False)
    def reset_form(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "reset.html")

    @post("/reset", status_code=200, sync_to_thread=True)
    def reset(self, request: Request[Any, Any, Any], data: Form) -> Response[Any]:
        app = appliance_of(request)
        token = text(data, "token", 200).strip()
        pin = text(data, "new_pin", 64)
        try:
            if pin or text(data, "new_pin_confirm", 64):  # the end of a recovery
                if pin != text(data, "new_pin_confirm", 64):
                    raise ValidationFailed("the two PINs differ")
                app.recovery_requests.complete(token, text(data, "password", 2048), pin, client_addr(request))
                return see_other("/login", "recovered")
            app.accounts.complete_reset(token, text(data, "password", 2048), client_addr(request))
        except ClientError as exc:
            return page(request, "reset.html", status=exc.status, error=explain(request, exc), token=token)
        return see_other("/login", "password_reset")

    @post("/ui/strength", status_code=200, sync_to_thread=True)
    def strength(self, request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        """The estimator's verdict while the person types (the submit checks again)."""
        app = appliance_of(request)
        password = data.get("password") if isinstance(data.get("password"), str) else ""
        principal = optional_caller(request)
        try:
            check_password_strength(str(password)[:2048], principal.email if principal else "", app.settings.security)
        except AppError as exc:
            return {"ok": False, "reason": explain(request, exc)}
        return {"ok": True, "reason": i18n.t(request, "Strong enough.")}

    @post("/lang", status_code=200, sync_to_thread=False)
    def language(self, request: Request[Any, Any, Any], data: Form) -> Redirect:
        lang = text(data, "lang", 8)
        back = local_path(text(data, "next", 2048), "/")
        if lang not in i18n.LOCALES:
            return see_other(back)
        return see_other(back, cookies=[cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400)])
