"""One upload or one download in progress: constant memory (one chunk at a
time), nothing in clear on disk. The payload key lives in these objects only."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.errors import IntegrityFailure, TooLarge
from appliance.files import format as fmt
from appliance.files.crypto import close_cipher
from appliance.files.store import BlobReader, BlobWriter

if TYPE_CHECKING:
    pass


@dataclass
class Upload:
    """Feed it the body in pieces of any size, then ``finish`` (or ``abort``)."""

    blob_id: str
    writer: BlobWriter
    sealer: fmt.Sealer
    max_bytes: int
    limit_message: str
    on_finish: Callable[[Upload], Any]
    on_abort: Callable[[Upload], None]
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    done: bool = False

    def write(self, data: bytes) -> None:
        if self.done:
            raise RuntimeError("upload already ended")
        self.size += len(data)
        if self.size > self.max_bytes:
            self.abort()
            raise TooLarge(self.limit_message)
        self.sha256.update(data)
        for sealed in self.sealer.feed(data):
            self.writer.write_chunk(sealed)

    def finish(self) -> Any:
        if self.done:
            raise RuntimeError("upload already ended")
        try:
            self.writer.write_chunk(self.sealer.finish())
            self.writer.complete()
            close_cipher(self.sealer.cipher)
            view = self.on_finish(self)
        except BaseException:
            self.abort()
            raise
        self.done = True
        return view

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        close_cipher(self.sealer.cipher)
        try:
            self.writer.abort()
        finally:
            self.on_abort(self)


@dataclass
class Download:
    """The plaintext of one file version, read back chunk by chunk.

    ``prepare(start, end)`` opens the first chunk the range needs (so a damaged
    file is refused before any header is sent); ``chunks()`` yields the bytes.
    The last chunk of the stream is always opened (and nothing may follow it)
    before the last byte of any range is yielded."""

    file_id: str
    version: int
    name: str
    content_type: str
    sha256: str
    size: int
    header: fmt.Header
    reader: BlobReader
    cipher: fmt.ChunkCipher
    on_failure: Callable[[], None]
    start: int = 0
    end: int = -1
    _first: bytes | None = None

    @property
    def chunk_size(self) -> int:
        return self.header.chunk_size

    @property
    def chunk_total(self) -> int:
        return fmt.chunk_count(self.size, self.chunk_size)

    def _open(self, index: int) -> bytes:
        last = index == self.chunk_total - 1
        sealed = self.reader.chunk(index, self.chunk_size, self.header.length)
        plain = fmt.open_chunk(self.cipher, index, last, sealed, self.chunk_size)
        expected = self.size - index * self.chunk_size if last else self.chunk_size
        if len(plain) != expected:
            raise fmt.StreamError()
        if last and self.reader.extra_after(self.chunk_total, self.chunk_size, self.header.length, len(sealed)):
            raise fmt.StreamError()
        return plain

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except fmt.StreamError:
            self.close()
            self.on_failure()
            raise IntegrityFailure() from None

    def prepare(self, start: int = 0, end: int | None = None) -> None:
        self.start, self.end = start, (self.size - 1 if end is None else end)
        if self.size == 0:
            self._first = self._guard(lambda: self._open(0))
            return
        self._first = self._guard(lambda: self._open(self.start // self.chunk_size))

    @property
    def length(self) -> int:
        return 0 if self.size == 0 else self.end - self.start + 1

    def chunks(self) -> Iterator[bytes]:
        try:
            if self.size == 0:
                return
            first, last = self.start // self.chunk_size, self.end // self.chunk_size
            for index in range(first, last + 1):
                plain = self._first if index == first and self._first is not None else None
                if plain is None:
                    plain = self._guard(lambda i=index: self._open(i))  # type: ignore[misc]
                self._first = None
                base = index * self.chunk_size
                lo = max(self.start - base, 0)
                hi = min(self.end - base + 1, len(plain))
                piece = plain[lo:hi]
                if index == last and last != self.chunk_total - 1:
                    # A range that stops short of the end: the stream's last chunk
                    # still proves the file is whole before the last byte goes out.
                    self._guard(lambda: self._open(self.chunk_total - 1))
                yield piece
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            close_cipher(self.cipher)
