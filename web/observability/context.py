"""What the current request is, for log lines and metrics: a context variable
holding a small mutable record (sync handlers run in worker threads that copy
the context, so they see and fill the same record)."""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestInfo:
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    method: str = ""
    route: str | None = None
    user_id: str | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("coffre_request", default=None)


def current() -> RequestInfo | None:
    return _current.get()


def begin(method: str) -> RequestInfo:
    info = RequestInfo(method=method)
    _current.set(info)
    return info


def set_user(user_id: str) -> None:
    """Record who the caller is (called where the session is authenticated)."""
    info = _current.get()
    if info is not None:
        info.user_id = user_id
