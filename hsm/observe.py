"""A hook on the token's domain operations (for metrics): one observer, called with
the operation's name, its duration and whether it failed. No observer: no cost
beyond one attribute read."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

Observer = Callable[[str, float, bool], None]
F = TypeVar("F", bound=Callable[..., Any])

_observer: Observer | None = None


def set_observer(observer: Observer | None) -> None:
    global _observer
    _observer = observer


def observed(kind: str) -> Callable[[F], F]:
    """Report each call of the decorated Work method as operation ``kind``."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            observer = _observer
            if observer is None:
                return method(*args, **kwargs)
            started = time.perf_counter()
            failed = True
            try:
                result = method(*args, **kwargs)
                failed = False
                return result
            finally:
                observer(kind, time.perf_counter() - started, failed)

        return wrapper  # type: ignore[return-value]

    return decorate
