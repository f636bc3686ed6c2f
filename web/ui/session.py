"""The browser session: `__Host-` cookies, the caller, the CSRF token."""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler

from appliance.core import Appliance
from appliance.errors import Forbidden, Unauthorized
from appliance.sessions import Principal
from web.deps import client_addr
from web.observability import set_user

SESSION_COOKIE = "__Host-coffre_session"
TICKET_COOKIE = "__Host-coffre_login"
CSRF_COOKIE = "__Host-coffre_csrf"
FLASH_COOKIE = "__Host-coffre_flash"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie(key: str, value: str, max_age: int | None = None) -> Cookie:
    """A `__Host-` cookie: Secure, HttpOnly, SameSite=Strict, Path=/, no Domain."""
    return Cookie(key=key, value=value, path="/", secure=True, httponly=True, samesite="strict", max_age=max_age)


def expired(key: str) -> Cookie:
    return cookie(key, "", max_age=0)


def appliance_of(request: Request[Any, Any, Any]) -> Appliance:
    app: Appliance = request.app.state.appliance
    return app


def optional_caller(request: Request[Any, Any, Any]) -> Principal | None:
    """The logged-in caller, or None (no cookie, or one that no longer opens a session)."""
    try:
        return caller(request)
    except Unauthorized:
        return None


def caller(request: Request[Any, Any, Any]) -> Principal:
    """The caller, checked against the database on every request (expiry, idle
    timeout, disabled or locked account, revoked session)."""
    known = request.scope.get("coffre_principal")
    if isinstance(known, Principal):
        return known
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("not logged in")
    principal = appliance_of(request).sessions.authenticate(token, client_addr(request))
    request.scope["coffre_principal"] = principal  # type: ignore[typeddict-unknown-key]
    set_user(principal.user_id)
    return principal


def csrf_for_session(session_cookie: str) -> str:
    """The CSRF token of a logged-in browser: HMAC-SHA256 keyed by its session cookie."""
    digest = hmac.new(session_cookie.encode(), b"coffre/csrf/v1", "sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def csrf_token(request: Request[Any, Any, Any]) -> tuple[str, bool]:
    """The CSRF token the page's forms carry, and whether it is new (to be set as a cookie).

    With a session, the token is derived from the session cookie's value (which is
    HttpOnly and secret): a cookie planted by another site on the same host name (other
    ports share cookies) cannot make a token that passes for the victim's session.
    Before login (the login and enrollment forms), a random double-submitted cookie."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        return csrf_for_session(session), False
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) == 43:
        return current, False
    fresh = request.scope.get("coffre_csrf_new")
    if not isinstance(fresh, str):
        fresh = secrets.token_urlsafe(32)
        request.scope["coffre_csrf_new"] = fresh  # type: ignore[typeddict-unknown-key]
    return fresh, True


def _same_origin(request: Request[Any, Any, Any]) -> bool:
    """Sec-Fetch-Site when the browser sends it (every current one does); else Origin.

    With ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null`` on the
    page's own form posts, so Origin is only a fallback."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def csrf_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every state change in the UI: same origin, and the double-submitted token."""
    request = cast(Request[Any, Any, Any], connection)
    if request.method in SAFE_METHODS:
        return
    if not _same_origin(request):
        raise Forbidden("cross-site request refused")
    expected = csrf_token(request)[0] if request.cookies.get(SESSION_COOKIE) else request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden("the form expired or came from another site; reload the page and try again")
