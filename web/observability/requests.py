"""Per-request metrics and the access log line (route template, never the raw
path: paths and query strings may carry one-time tokens)."""

from __future__ import annotations

import logging
import time
from typing import Any

from web.observability import context
from web.observability.metrics import REQUEST_SECONDS, REQUESTS, PoolWatch

access = logging.getLogger("coffre.access")
UNMATCHED = "unmatched"


class RequestObserver:
    def __init__(self, watch: PoolWatch) -> None:
        self.watch = watch

    def middleware(self, app: Any) -> Any:
        """ASGI middleware around every routed request."""

        async def handle(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            info = context.begin(scope.get("method", ""))
            info.route = scope.get("path_template") or UNMATCHED
            scope["coffre.metered"] = True
            status = 500

            async def send_wrapper(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message.setdefault("headers", []).append((b"x-request-id", info.request_id.encode()))
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                self.finish(info, status, time.perf_counter() - started)

        return handle

    async def unmatched(self, message: Any, scope: Any) -> None:
        """before_send hook: requests no route took (404, 405) are counted too."""
        if message["type"] != "http.response.start" or scope.get("type") != "http" or scope.get("coffre.metered"):
            return
        info = context.current() or context.begin(scope.get("method", ""))
        info.method = scope.get("method", "")
        info.route = UNMATCHED
        self.finish(info, message["status"], None)

    def finish(self, info: context.RequestInfo, status: int, seconds: float | None) -> None:
        route = info.route or UNMATCHED
        REQUESTS.labels(route, info.method, str(status)).inc()
        if seconds is not None:
            REQUEST_SECONDS.labels(route, info.method).observe(seconds)
        self.watch.sample()
        duration_ms = None if seconds is None else round(seconds * 1000, 2)
        access.info(
            "%s %s %s%s",
            info.method,
            route,
            status,
            "" if duration_ms is None else f" {duration_ms} ms",
            extra={"status": status, "duration_ms": duration_ms, "route": route, "method": info.method},
        )
