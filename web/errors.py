"""The one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from appliance.errors import AppError, RateLimited, ServiceUnavailable, Unauthorized
from hsm.errors import HsmError, HsmUnavailable

log = logging.getLogger("coffre.web")


def _json(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response[dict[str, object]]:
    return Response(
        content={"status_code": status, "error": code, "detail": detail},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers or {},
    )


def app_error(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, object]]:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="coffre"'
    if exc.status >= 500:
        log.warning("request failed: %s (%s)", exc.code, type(exc).__name__)
    return _json(exc.status, exc.code, exc.message, headers)


def hsm_error(_: Request[Any, Any, Any], exc: HsmError) -> Response[dict[str, object]]:
    if isinstance(exc, HsmUnavailable):
        log.error("HSM unavailable: %s", exc)
        return _json(503, "hsm_unavailable", "the HSM is unavailable; try again shortly", {"Retry-After": "5"})
    log.error("HSM error: %s", type(exc).__name__)
    return _json(500, "hsm_error", "the HSM refused the operation")


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    code = {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
        429: "rate_limited",
    }.get(exc.status_code, "http_error")
    response = _json(exc.status_code, code, exc.detail)
    if exc.extra and exc.status_code == 400:
        response.content["extra"] = exc.extra  # type: ignore[index]
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return _json(500, "internal_error", "internal error; the event was logged")


HANDLERS = {
    AppError: app_error,
    HsmError: hsm_error,
    HTTPException: http_error,
    Exception: unexpected,
}

__all__ = ["HANDLERS", "ServiceUnavailable"]
