"""Several files as one zip, streamed: the standard library's ``zipfile``
writing to a sink that hands each piece on (data descriptors, ZIP64 as needed;
entries are stored, not compressed: the content is usually compressed already
and the point is disk speed)."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.offset = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.pieces.append(bytes(b))
        self.offset += len(b)
        return len(b)

    def tell(self) -> int:
        return self.offset

    def drain(self) -> Iterator[bytes]:
        pieces, self.pieces = self.pieces, []
        yield from pieces


def _unique(name: str, seen: set[str]) -> str:
    candidate, n = name, 1
    while candidate in seen:
        n += 1
        stem, dot, ext = name.rpartition(".")
        candidate = f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"
    seen.add(candidate)
    return candidate


def zip_stream(entries: Iterator[tuple[str, Iterator[bytes]]]) -> Iterator[bytes]:
    sink = _Sink()
    seen: set[str] = set()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, chunks in entries:
            info = zipfile.ZipInfo(_unique(name, seen), date_time=time.gmtime()[:6])
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, mode="w", force_zip64=True) as member:
                for piece in chunks:
                    member.write(piece)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()
