"""`coffre files migrate` between the stores (same bytes, online), and the
periodic task: the transfer sweeper and gc of an abandoned upload."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import func, select

from appliance.core import Appliance
from appliance.files.gc import collect, migrate
from appliance.files.models import FileChunk, FileUpload, FileVersion
from appliance.files.task import FilesTask
from tests.files.conftest import owner_with_vault, upload
from tests.support import FakeClock


def _blobs_on_disk(app: Appliance) -> int:
    return sum(1 for p in (app.settings.data_dir / "files").rglob("*") if p.is_file())


def test_migrate_both_ways(fclient: Any, files_app: Appliance) -> None:
    headers, vault_id = owner_with_vault(fclient, files_app)
    bodies = {}
    for size in (0, 70_000, 200_000):
        body = os.urandom(size)
        bodies[upload(fclient, headers, vault_id, f"f{size}", body).json()["id"]] = body
    start = files_app.settings.files.store
    other = "database" if start == "filesystem" else "filesystem"
    assert migrate(files_app, other) == 3
    assert migrate(files_app, other) == 0  # repeatable
    with files_app.db.read() as db:
        assert {v.store for v in db.execute(select(FileVersion)).scalars()} == {other}
        chunks = db.execute(select(func.count()).select_from(FileChunk)).scalar_one()
    assert (chunks > 0) == (other == "database")
    assert (_blobs_on_disk(files_app) > 0) == (other == "filesystem")
    for fid, body in bodies.items():
        assert fclient.get(f"/api/v1/files/{fid}/content", headers=headers).content == body
    assert migrate(files_app, start) == 3
    for fid, body in bodies.items():
        assert fclient.get(f"/api/v1/files/{fid}/content", headers=headers).content == body
    with files_app.db.read() as db:
        assert db.execute(select(func.count()).select_from(FileUpload)).scalar_one() == 0


def test_periodic_task_sweeps_and_collects(fs_client: Any, fs_app: Appliance, clock: FakeClock) -> None:
    from appliance.transfers.models import Transfer

    headers, vault_id = owner_with_vault(fs_client, fs_app)
    principal = fs_app.sessions.authenticate(headers["Authorization"].split()[1], None)
    kept = upload(fs_client, headers, vault_id, "kept.bin", b"kept").json()["id"]
    tid = fs_app.transfers.create(principal, ["a@example.com"], None, "a transfer password", None, 1, 3)
    shipped = fs_app.transfers.begin_upload(principal, tid, "t.bin")
    shipped.write(b"transfer content")
    shipped.finish()
    abandoned = fs_app.files.begin_upload(principal, vault_id, "abandoned.bin")
    abandoned.write(os.urandom(300_000))  # never finished: the client went away
    assert collect(fs_app).uploads == 0  # within the grace period: left alone
    assert _blobs_on_disk(fs_app) == 3
    clock.advance(max(fs_app.settings.files.gc_grace_seconds, 3600) + 1)
    FilesTask(fs_app).round()  # what every web process runs each gc_interval_seconds
    with fs_app.db.read() as db:
        assert db.execute(select(func.count()).select_from(FileUpload)).scalar_one() == 0
        row = db.get(Transfer, tid)
        assert row is not None and row.status == "expired" and row.shredded_at is not None
        assert db.get(FileVersion, (kept, 1)) is not None
    assert _blobs_on_disk(fs_app) == 1  # the kept file's blob only
