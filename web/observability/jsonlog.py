"""``[server] log_format = "json"``: one JSON object per line.

Fields: time, level, logger, message, and when known request_id, method, route,
status, duration_ms, user_id (from the request context or the record's extras).
Only what the code chose to log is written; the access line names the route
template, never the raw path or query string, and no header or body."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from web.observability import context

EXTRA_FIELDS = ("status", "duration_ms", "route", "method")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        info = context.current()
        if info is not None:
            out["request_id"] = info.request_id
            if info.user_id:
                out["user_id"] = info.user_id
            if info.route:
                out["route"] = info.route
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def configure(handlers: list[logging.Handler]) -> None:
    """JSON on every handler; uvicorn's own loggers go through them too, and its
    access log (raw paths with query strings) is replaced by coffre.access."""
    formatter = JsonFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
