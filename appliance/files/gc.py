"""Orphans and moves: ``coffre files gc`` and ``coffre files migrate``.

An orphan is a blob no ``file_versions`` row names: an upload killed before it
committed (its ``file_uploads`` row is older than the grace period), or content
whose row was deleted while the blob removal failed. Blobs are listed *before*
the rows are read, so an upload that commits meanwhile is seen as referenced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from appliance.files import format as fmt
from appliance.files.models import FileUpload, FileVersion
from appliance.tokens import new_id
from appliance.transfers.models import DepositFile, TransferFile

if TYPE_CHECKING:
    from appliance.core import Appliance


@dataclass(frozen=True)
class GcReport:
    uploads: int
    blobs: int


def collect(app: Appliance, grace_seconds: float | None = None) -> GcReport:
    files = app.files
    grace = files.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
    stores = [files.store("filesystem"), files.store("database")]
    listed = {store.name: [blob_id for blob_id, _ in store.blob_ids()] for store in stores}
    cutoff = app.clock() - grace
    with app.db.read() as db:
        referenced = set(db.execute(select(FileVersion.blob_id)).scalars())
        referenced |= set(db.execute(select(TransferFile.blob_id)).scalars())
        referenced |= set(db.execute(select(DepositFile.blob_id)).scalars())
        uploads = {u.blob_id: u for u in db.execute(select(FileUpload)).scalars()}
    stale = [u for u in uploads.values() if u.started_at <= cutoff]
    for upload in stale:
        files.store(upload.store).delete(upload.blob_id)
        with app.db.write() as db:
            db.execute(delete(FileUpload).where(FileUpload.blob_id == upload.blob_id))
    removed = 0
    live_uploads = {u.blob_id for u in uploads.values() if u.started_at > cutoff}
    for store in stores:
        for blob_id in listed[store.name]:
            if blob_id in referenced or blob_id in live_uploads:
                continue
            store.delete(blob_id)
            removed += 1
    if stale or removed:
        with app.keystore.work() as work, app.db.write() as db:
            app.audit.append(db, work, "file.gc", uploads=len(stale), blobs=removed)
    return GcReport(len(stale), removed)


def migrate(app: Appliance, to: str) -> int:
    """Copy every blob not in store ``to`` there, switch its row, delete the old
    copy. Online: readers that began on the old copy finish on it (filesystem) or
    see the move as a failed download they retry (database)."""
    files = app.files
    target = files.store(to)
    moved = 0
    while True:
        with app.db.read() as db:
            todo = list(db.execute(select(FileVersion).where(FileVersion.store != to).limit(50)).scalars())
        if not todo:
            return moved
        for v in todo:
            source = files.store(v.store)
            new_blob = new_id()
            with app.db.write() as db:
                db.add(FileUpload(blob_id=new_blob, store=to, started_at=app.clock()))
            reader = source.reader(v.blob_id)
            writer = target.writer(new_blob)
            try:
                header = reader.header()
                writer.write_header(header)
                for i in range(fmt.chunk_count(v.size, v.chunk_size)):
                    writer.write_chunk(reader.chunk(i, v.chunk_size, len(header)))
                writer.complete()
            except BaseException:
                writer.abort()
                raise
            finally:
                reader.close()
            with app.db.write() as db:
                done = db.execute(
                    update(FileVersion)
                    .where(FileVersion.blob_id == v.blob_id)
                    .values(blob_id=new_blob, store=to)
                    .execution_options(synchronize_session=False)
                )
                db.execute(delete(FileUpload).where(FileUpload.blob_id == new_blob))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                source.delete(v.blob_id)
                moved += 1
            else:  # deleted meanwhile
                target.delete(new_blob)
