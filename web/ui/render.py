"""Page responses: one template per page, the context every page shares."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from appliance.sessions import Principal
from web.ui import i18n
from web.ui.messages import flash_text
from web.ui.session import CSRF_COOKIE, FLASH_COOKIE, appliance_of, cookie, csrf_token, expired


def when(ts: float | None) -> str:
    """A UTC time as the pages show it (and a machine-readable ``datetime``)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    cookies: Iterable[Cookie] = (),
    **context: Any,
) -> Template:
    """Render ``template`` with the shared context; sets the CSRF cookie on first visit."""
    out = list(cookies)
    token, new = csrf_token(request)
    if new:
        out.append(cookie(CSRF_COOKIE, token))
    flash_key = request.cookies.get(FLASH_COOKIE)
    if flash_key:
        out.append(expired(FLASH_COOKIE))
    principal = request.scope.get("coffre_principal")
    user = principal if isinstance(principal, Principal) else None
    settings = appliance_of(request).settings
    shared = {
        "user": user,
        "csrf": token,
        "lang": i18n.locale_of(request),
        "languages": i18n.NAMES,
        "idle_lock": settings.ui.idle_lock_seconds if user else 0,
        "flash": flash_text(request, flash_key),
        "when": when,
        "path": request.url.path,
    }
    return Template(template_name=template, context={**shared, **context}, status_code=status, cookies=out)


def see_other(path: str, flash: str | None = None, cookies: Iterable[Cookie] = ()) -> Redirect:
    """303 to ``path`` (post/redirect/get), with an optional notice for the next page."""
    out = list(cookies)
    if flash:
        out.append(cookie(FLASH_COOKIE, flash, max_age=60))
    return Redirect(path=path, status_code=303, cookies=out)
