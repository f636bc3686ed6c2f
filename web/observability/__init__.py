"""Metrics (Prometheus), the per-request context and JSON logs."""

from web.observability.context import RequestInfo, current, set_user
from web.observability.metrics import PoolWatch, install, prepare_multiprocess, scrape
from web.observability.requests import RequestObserver

__all__ = [
    "PoolWatch",
    "RequestInfo",
    "RequestObserver",
    "current",
    "install",
    "prepare_multiprocess",
    "scrape",
    "set_user",
]
