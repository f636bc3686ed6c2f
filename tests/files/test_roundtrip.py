"""Round trips through the API on both stores (SQLite and PostgreSQL), Range,
versions, delete, and the sealed bytes at rest."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.core import Appliance
from appliance.files import format as fmt
from appliance.files.models import FileChunk, FileVersion
from tests.files.conftest import CHUNK, owner_with_vault, upload

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]


def _blob_bytes(app: Appliance, blob_id: str, store: str) -> bytes:
    if store == "database":
        with app.db.read() as db:
            rows = db.execute(select(FileChunk.data).where(FileChunk.blob_id == blob_id).order_by(FileChunk.seq))
            return b"".join(bytes(r) for r in rows.scalars())
    return app.files.store("filesystem").path(blob_id).read_bytes()  # type: ignore[attr-defined]


def test_round_trip_sizes(fclient: Any, files_app: Appliance, store: str) -> None:
    headers, vault_id = owner_with_vault(fclient, files_app)
    for size in SIZES:
        marker = b"CONTRACT-MARKER-" + str(size).encode()
        body = (marker * (size // len(marker) + 1))[:size] if size >= len(marker) else os.urandom(size)
        r = upload(fclient, headers, vault_id, f"f{size}.bin", body)
        assert r.status_code == 201, r.text
        out = r.json()
        assert {k: out[k] for k in ("name", "size", "sha256", "version")} == {
            "name": f"f{size}.bin",
            "size": size,
            "sha256": hashlib.sha256(body).hexdigest(),
            "version": 1,
        }
        got = fclient.get(f"/api/v1/files/{out['id']}/content", headers=headers)
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["content-length"] == str(size)
        assert got.headers["content-disposition"].startswith('attachment; filename="f')
        with files_app.db.read() as db:
            v = db.execute(select(FileVersion).where(FileVersion.file_id == out["id"])).scalar_one()
        assert v.store == store
        sealed = _blob_bytes(files_app, v.blob_id, store)
        header_len = fmt.header_length(len(fmt.key_ref(vault_id, out["id"], 1)))
        assert len(sealed) == header_len + fmt.sealed_length(size, CHUNK)
        if size >= len(marker):
            assert marker not in sealed
    listed = fclient.get(f"/api/v1/vaults/{vault_id}/files", headers=headers).json()
    assert sorted(f["size"] for f in listed) == sorted(SIZES)


def test_range_versions_delete(fclient: Any, files_app: Appliance, store: str) -> None:
    headers, vault_id = owner_with_vault(fclient, files_app)
    body = os.urandom(3 * CHUNK + 100)
    fid = upload(fclient, headers, vault_id, "report.pdf", body).json()["id"]
    url = f"/api/v1/files/{fid}/content"
    for rng, expected in [
        ("bytes=0-9", body[:10]),
        (f"bytes={CHUNK - 5}-{CHUNK + 5}", body[CHUNK - 5 : CHUNK + 6]),
        ("bytes=-50", body[-50:]),
        (f"bytes={2 * CHUNK}-", body[2 * CHUNK :]),
    ]:
        r = fclient.get(url, headers={**headers, "Range": rng})
        assert r.status_code == 206, rng
        assert r.content == expected, rng
        assert r.headers["content-range"].endswith(f"/{len(body)}")
    r = fclient.get(url, headers={**headers, "Range": f"bytes={len(body)}-"})
    assert r.status_code == 416
    # A new version keeps the previous one.
    second = b"second version"
    r = fclient.put(url, content=second, headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["name"] == "report.pdf"
    assert fclient.get(url, headers=headers).content == second
    assert fclient.get(f"/api/v1/files/{fid}", headers=headers).json()["version"] == 2
    with files_app.db.read() as db:
        versions = list(db.execute(select(FileVersion).where(FileVersion.file_id == fid)).scalars())
    assert [v.version for v in sorted(versions, key=lambda v: v.version)] == [1, 2]
    assert fclient.delete(f"/api/v1/files/{fid}", headers=headers).status_code == 204
    assert fclient.get(url, headers=headers).status_code == 404
    with files_app.db.read() as db:
        assert db.execute(select(func.count()).select_from(FileVersion)).scalar_one() == 0
        assert db.execute(select(func.count()).select_from(FileChunk)).scalar_one() == 0
    if store == "filesystem":
        assert not any(p.is_file() for p in (files_app.settings.data_dir / "files").rglob("*"))


def test_retention_keeps_the_last_versions(fs_client: Any, fs_app: Appliance) -> None:
    import dataclasses

    fs_app.settings = dataclasses.replace(
        fs_app.settings, files=dataclasses.replace(fs_app.settings.files, keep_versions=3)
    )
    headers, vault_id = owner_with_vault(fs_client, fs_app)
    fid = upload(fs_client, headers, vault_id, "a.txt", b"v1").json()["id"]
    for n in range(2, 6):
        r = fs_client.put(f"/api/v1/files/{fid}/content", content=f"v{n}".encode(), headers=headers)
        assert r.status_code == 200
    with fs_app.db.read() as db:
        kept = sorted(v.version for v in db.execute(select(FileVersion)).scalars())
    assert kept == [3, 4, 5]
    blobs = [p for p in (fs_app.settings.data_dir / "files" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 3


@pytest.mark.parametrize("name", ["", "a/b", "x\x01y", "."])
def test_bad_names_are_refused(fs_client: Any, fs_app: Appliance, name: str) -> None:
    headers, vault_id = owner_with_vault(fs_client, fs_app)
    r = upload(fs_client, headers, vault_id, name, b"data")
    assert r.status_code in (400, 422)
    assert fs_client.get(f"/api/v1/vaults/{vault_id}/files", headers=headers).json() == []


def test_bulk_crypto_in_the_token(sqlite_url: str, hsm_config: Any, tmp_path: Any, clock: Any) -> None:
    """`[files] bulk_crypto = "hsm"`: the same format, chunks sealed by the token; either
    setting opens what the other wrote."""
    import dataclasses

    from litestar.testing import TestClient

    from tests.conftest import dismantle
    from tests.files.conftest import build
    from web.app import create_app

    app = build(sqlite_url, hsm_config, tmp_path, clock, bulk_crypto="hsm")
    try:
        with TestClient(create_app(app)) as c:
            headers, vault_id = owner_with_vault(c, app)
            body = os.urandom(2 * CHUNK + 99)
            fid = upload(c, headers, vault_id, "in-token.bin", body).json()["id"]
            assert c.get(f"/api/v1/files/{fid}/content", headers=headers).content == body
            r = c.get(f"/api/v1/files/{fid}/content", headers={**headers, "Range": f"bytes={CHUNK}-{CHUNK + 9}"})
            assert r.content == body[CHUNK : CHUNK + 10]
            app.settings = dataclasses.replace(
                app.settings, files=dataclasses.replace(app.settings.files, bulk_crypto="process")
            )
            assert c.get(f"/api/v1/files/{fid}/content", headers=headers).content == body
    finally:
        dismantle(app)
