"""Error pages for the UI (403/404/413/423/429/503 ...), JSON for the API.

The app has one set of exception handlers; each looks at the path and answers
the API's JSON contract under /api, /healthz and /schema, a page elsewhere. A
page never shows a stack trace; an ended session on a page goes to the login."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from appliance.errors import AppError, RateLimited, Unauthorized
from hsm.errors import HsmError, HsmUnavailable
from web import errors as api_errors
from web.ui.i18n import N_, t
from web.ui.messages import GENERIC, explain
from web.ui.render import page, see_other
from web.ui.session import SESSION_COOKIE, expired

log = logging.getLogger("coffre.web")
API_PREFIXES = ("/api/", "/healthz", "/schema")
TITLES = {
    400: N_("Bad request"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    405: N_("Not allowed"),
    409: N_("Conflict"),
    413: N_("Too large"),
    422: N_("Not valid"),
    423: N_("Account locked"),
    429: N_("Too many attempts"),
    500: N_("Server error"),
    503: N_("Temporarily unavailable"),
}


def _is_api(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(API_PREFIXES)


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _error_page(request: Request[Any, Any, Any], status: int, message: str, retry_after: int | None = None) -> Any:
    if _wants_json(request):  # the page's own scripts (reveal, copy, generator)
        return Response({"error": message}, status_code=status, media_type=MediaType.JSON)
    title = t(request, TITLES.get(status, TITLES[500]))
    response = page(request, "error.html", status=status, code=status, title=title, message=message)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def app_error(request: Request[Any, Any, Any], exc: AppError) -> Any:
    if _is_api(request):
        return api_errors.app_error(request, exc)
    if isinstance(exc, Unauthorized):
        if _wants_json(request):
            return Response({"error": explain(request, exc)}, status_code=401, media_type=MediaType.JSON)
        return see_other("/login", "session_ended", cookies=[expired(SESSION_COOKIE)])
    if exc.status >= 500:
        log.warning("page failed: %s (%s)", exc.code, type(exc).__name__)
    retry = exc.retry_after if isinstance(exc, RateLimited) else None
    return _error_page(request, exc.status, explain(request, exc), retry)


def hsm_error(request: Request[Any, Any, Any], exc: HsmError) -> Any:
    if _is_api(request):
        return api_errors.hsm_error(request, exc)
    if isinstance(exc, HsmUnavailable):
        log.error("HSM unavailable: %s", exc)
        return _error_page(request, 503, t(request, GENERIC[503]), 5)
    log.error("HSM error: %s", type(exc).__name__)
    return _error_page(request, 500, t(request, GENERIC[500]))


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Any:
    if _is_api(request):
        return api_errors.http_error(request, exc)
    status = exc.status_code if exc.status_code in TITLES else 500
    if status == 429 and exc.headers and "Retry-After" in exc.headers:
        return _error_page(request, 429, t(request, GENERIC[429]), int(exc.headers["Retry-After"]))
    return _error_page(request, status, t(request, GENERIC.get(status, GENERIC[400])))


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Any:
    if _is_api(request):
        return api_errors.unexpected(request, exc)
    log.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return _error_page(request, 500, t(request, GENERIC[500]))


HANDLERS: dict[type[Exception], Callable[[Request[Any, Any, Any], Any], Any]] = {
    AppError: app_error,
    HsmError: hsm_error,
    HTTPException: http_error,
    Exception: unexpected,
}
