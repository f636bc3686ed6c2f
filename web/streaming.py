"""Raw request bodies read as a stream, in pieces handed to a worker thread, and
HTTP Range parsing for downloads."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from litestar import Request
from litestar.datastructures import State

from appliance.errors import RangeNotSatisfiable, ValidationFailed
from appliance.files import Upload
from web.deps import serialized

T = TypeVar("T")
PIECE = 1024 * 1024  # bytes gathered from the socket before one write to the store
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def gated(request: Request[Any, Any, State], fn: Callable[[], T]) -> T:
    """Run short appliance work in a thread through the process's work gate."""

    def run() -> T:
        with serialized(request):
            return fn()

    return await anyio.to_thread.run_sync(run)


def declared_length(request: Request[Any, Any, State]) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationFailed("Content-Length must be a number")
    return int(raw)


def refuse_form(request: Request[Any, Any, State]) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ValidationFailed("send the file itself as the body (Content-Type: application/octet-stream)")


async def pump(request: Request[Any, Any, State], upload: Upload) -> None:
    """Body → upload, one piece (≤ ``PIECE`` + one socket read) at a time; the
    bulk work runs outside the work gate. A failure aborts the upload."""
    buffer = bytearray()
    try:
        async for data in request.stream():
            buffer += data
            if len(buffer) >= PIECE:
                piece, buffer = bytes(buffer), bytearray()
                await anyio.to_thread.run_sync(upload.write, piece)
        if buffer:
            await anyio.to_thread.run_sync(upload.write, bytes(buffer))
    except BaseException:
        await anyio.to_thread.run_sync(upload.abort)
        raise


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range (``start``, ``end`` inclusive), None for the whole file.
    Several ranges are answered with the whole file (RFC 9110 allows it)."""
    if header is None or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or (last and int(last) < start):
            raise RangeNotSatisfiable(f"the file has {size} bytes")
        return start, end
    suffix = int(last)
    if suffix == 0 or size == 0:
        raise RangeNotSatisfiable(f"the file has {size} bytes")
    return max(size - suffix, 0), size - 1


def attachment(name: str) -> str:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
