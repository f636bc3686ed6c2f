"""Where sealed file content lives. Both stores hold the same bytes: the header,
then each chunk's ciphertext‖tag in order (appliance/files/format.py).

- ``FilesystemStore``: one file per blob under ``<dir>/blobs/<2 hex>/<blob id>``,
  written as ``<dir>/tmp/<blob id>.part``, fsynced, renamed into place and the
  directory fsynced. Several nodes need the directory on a shared mount.
- ``DatabaseStore``: one row per chunk in ``file_chunks`` (seq 0: the header),
  written in short transactions; on PostgreSQL every node sees every file.

A blob becomes a file only when the ``file_versions`` row naming it commits; until
then it is an upload (``file_uploads``) or an orphan that ``gc`` removes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import delete, func, select

from appliance.files.format import StreamError, header_length
from appliance.files.models import FileChunk

if TYPE_CHECKING:
    from appliance.db import Database

_FIXED_HEADER = 12  # magic, version, algorithm, chunk size, key length
_DB_BATCH_BYTES = 8 * 1024 * 1024


class BlobWriter(Protocol):
    def write_header(self, header: bytes) -> None: ...

    def write_chunk(self, sealed: bytes) -> None: ...

    def complete(self) -> None:
        """Everything written is durable; the blob may now be referenced."""

    def abort(self) -> None: ...


class BlobReader(Protocol):
    def header(self) -> bytes: ...

    def chunk(self, index: int, chunk_size: int, header_len: int) -> bytes: ...

    def extra_after(self, chunks: int, chunk_size: int, header_len: int, last_len: int) -> bool:
        """True when anything is stored after the last chunk (refused)."""

    def close(self) -> None: ...


class BlobStore(Protocol):
    name: str

    def writer(self, blob_id: str) -> BlobWriter: ...

    def reader(self, blob_id: str) -> BlobReader: ...

    def delete(self, blob_id: str) -> None: ...

    def blob_ids(self) -> Iterator[tuple[str, float | None]]:
        """Every stored blob, with its modification time where the store knows it."""


# -- filesystem ----------------------------------------------------------------------


class _FsWriter:
    def __init__(self, store: FilesystemStore, blob_id: str) -> None:
        self.store = store
        self.blob_id = blob_id
        self.tmp = store.tmp_dir / f"{blob_id}.part"
        self.fh = open(self.tmp, "xb", buffering=0)  # noqa: SIM115

    def write_header(self, header: bytes) -> None:
        self.fh.write(header)

    def write_chunk(self, sealed: bytes) -> None:
        view = memoryview(sealed)
        while view:
            done = self.fh.write(view)
            view = view[done:]

    def complete(self) -> None:
        os.fsync(self.fh.fileno())
        self.fh.close()
        final = self.store.path(self.blob_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, final)
        _fsync_dir(final.parent)

    def abort(self) -> None:
        try:
            self.fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class _FsReader:
    def __init__(self, path: Path) -> None:
        try:
            self.fh = open(path, "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise StreamError() from None

    def _read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        self.fh.seek(offset)
        while len(out) < length:
            piece = self.fh.read(length - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def header(self) -> bytes:
        fixed = self._read(0, _FIXED_HEADER)
        if len(fixed) != _FIXED_HEADER:
            raise StreamError()
        key_len = int.from_bytes(fixed[10:12], "big")
        return self._read(0, header_length(key_len))

    def chunk(self, index: int, chunk_size: int, header_len: int) -> bytes:
        return self._read(header_len + index * (chunk_size + 16), chunk_size + 16)

    def extra_after(self, chunks: int, chunk_size: int, header_len: int, last_len: int) -> bool:
        end = header_len + (chunks - 1) * (chunk_size + 16) + last_len
        return os.fstat(self.fh.fileno()).st_size != end

    def close(self) -> None:
        self.fh.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStore:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        for d in (self.blob_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, blob_id: str) -> Path:
        if not blob_id.isalnum():
            raise StreamError()
        return self.blob_dir / blob_id[:2] / blob_id

    def writer(self, blob_id: str) -> BlobWriter:
        return _FsWriter(self, blob_id)

    def reader(self, blob_id: str) -> BlobReader:
        return _FsReader(self.path(blob_id))

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
        (self.tmp_dir / f"{blob_id}.part").unlink(missing_ok=True)

    def blob_ids(self) -> Iterator[tuple[str, float | None]]:
        for d in (self.blob_dir, self.tmp_dir):
            for p in d.rglob("*"):
                if p.is_file():
                    try:
                        mtime = p.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    yield p.name.removesuffix(".part"), mtime


# -- database --------------------------------------------------------------------------


class _DbWriter:
    def __init__(self, db: Database, blob_id: str) -> None:
        self.db = db
        self.blob_id = blob_id
        self.seq = 0
        self.batch: list[FileChunk] = []
        self.batch_bytes = 0

    def _add(self, data: bytes) -> None:
        self.batch.append(FileChunk(blob_id=self.blob_id, seq=self.seq, data=data))
        self.seq += 1
        self.batch_bytes += len(data)
        if self.batch_bytes >= _DB_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            with self.db.write() as session:
                session.add_all(self.batch)
            self.batch = []
            self.batch_bytes = 0

    def write_header(self, header: bytes) -> None:
        self._add(header)

    def write_chunk(self, sealed: bytes) -> None:
        self._add(sealed)

    def complete(self) -> None:
        self._flush()

    def abort(self) -> None:
        self.batch = []
        with self.db.write() as session:
            session.execute(delete(FileChunk).where(FileChunk.blob_id == self.blob_id))


class _DbReader:
    def __init__(self, db: Database, blob_id: str) -> None:
        self.db = db
        self.blob_id = blob_id

    def _row(self, seq: int) -> bytes:
        with self.db.read() as session:
            data = session.execute(
                select(FileChunk.data).where(FileChunk.blob_id == self.blob_id, FileChunk.seq == seq)
            ).scalar_one_or_none()
        return bytes(data) if data is not None else b""

    def header(self) -> bytes:
        return self._row(0)

    def chunk(self, index: int, chunk_size: int, header_len: int) -> bytes:
        return self._row(index + 1)

    def extra_after(self, chunks: int, chunk_size: int, header_len: int, last_len: int) -> bool:
        with self.db.read() as session:
            top = session.execute(
                select(func.max(FileChunk.seq)).where(FileChunk.blob_id == self.blob_id)
            ).scalar_one_or_none()
        return bool(top != chunks)

    def close(self) -> None:
        pass


class DatabaseStore:
    name = "database"

    def __init__(self, db: Database) -> None:
        self.db = db

    def writer(self, blob_id: str) -> BlobWriter:
        return _DbWriter(self.db, blob_id)

    def reader(self, blob_id: str) -> BlobReader:
        return _DbReader(self.db, blob_id)

    def delete(self, blob_id: str) -> None:
        with self.db.write() as session:
            session.execute(delete(FileChunk).where(FileChunk.blob_id == blob_id))

    def blob_ids(self) -> Iterator[tuple[str, float | None]]:
        with self.db.read() as session:
            ids = list(session.execute(select(FileChunk.blob_id).distinct()).scalars())
        for blob_id in ids:
            yield blob_id, None
