"""GET /metrics (Prometheus text format), for loopback peers or a bearer token.

A request is "from loopback" only when its TCP peer is a loopback address and it
carries no X-Forwarded-For / Forwarded header: Apache proxies from loopback too,
and always adds X-Forwarded-For, so the internet never counts as local. Every
refusal is a plain 404 (the endpoint does not advertise itself)."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from web.observability import scrape
from web.observability.metrics import CONTENT_TYPE


def _loopback(request: Request[Any, Any, Any]) -> bool:
    client = request.scope.get("client")
    if not client or request.headers.get("x-forwarded-for") or request.headers.get("forwarded"):
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _bearer_ok(request: Request[Any, Any, Any], token: str | None) -> bool:
    if not token:
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())


@get("/metrics", include_in_schema=False, sync_to_thread=True)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = request.app.state
    if not (_loopback(request) or _bearer_ok(request, state.metrics_token)):
        raise NotFoundException()
    return Response(scrape(state.appliance, state.pool_watch), media_type=CONTENT_TYPE)
