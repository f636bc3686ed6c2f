"""Integrity of what a database writer could change: row MACs anchored in the token
(``anchors``), MACs of tickets, tokens and the audit head (``macs``), and the
one-time adoption of rows written before MACs existed (``adoption``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from appliance.integrity import macs
from appliance.integrity.anchors import BrokenRow, Change, Integrity
from appliance.integrity.rows import (
    FOLDER,
    FOLDER_ACCESS,
    FOLDER_KEY,
    MEMBER,
    SESSION,
    USER,
    VAULT,
    Domain,
    RowSpec,
    bucket_of,
)

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def recording_failures(app: Any) -> Iterator[None]:
    """For functions outside a service class: a ``BrokenRow`` raised inside is written
    to the audit log once the block's transactions have ended (see ``audits_integrity``)."""
    try:
        yield
    except BrokenRow as exc:
        app.integrity.record(exc)
        raise


def audits_integrity(method: F) -> F:
    """For service methods (``self.app``): a ``BrokenRow`` raised anywhere inside is
    written to the audit log once every transaction of the call has ended."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BrokenRow as exc:
            self.app.integrity.record(exc)
            raise

    return cast(F, wrapper)


__all__ = [
    "FOLDER",
    "FOLDER_ACCESS",
    "FOLDER_KEY",
    "MEMBER",
    "SESSION",
    "USER",
    "VAULT",
    "BrokenRow",
    "Change",
    "Domain",
    "Integrity",
    "RowSpec",
    "audits_integrity",
    "bucket_of",
    "macs",
    "recording_failures",
]
