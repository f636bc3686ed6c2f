"""Files in folders: sealed under the nearest keyed folder's key; a folder set to
"no access" hides its files (404) and re-wraps their data keys under the folder's
new key without rewriting content; clearing it brings them back; a folder with a
file in it is not deleted; a member removal rotates every key and files still open."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import select

from appliance.core import Appliance
from appliance.files.models import FileVersion
from tests.files.conftest import owner_with_vault
from tests.files.test_tamper import read_parts
from tests.support import new_user


def _version(app: Appliance, file_id: str) -> FileVersion:
    with app.db.read() as db:
        return db.execute(select(FileVersion).where(FileVersion.file_id == file_id)).scalar_one()


def test_files_follow_folder_access(fclient: Any, files_app: Appliance) -> None:
    owner_h, vault_id = owner_with_vault(fclient, files_app)
    owner = files_app.sessions.authenticate(owner_h["Authorization"].split()[1], None)
    reader_h = new_user(fclient, files_app, "reader@example.com")
    writer_h = new_user(fclient, files_app, "writer@example.com")
    for email, role in (("reader@example.com", "read"), ("writer@example.com", "write")):
        r = fclient.post(f"/api/v1/vaults/{vault_id}/members", json={"email": email, "role": role}, headers=owner_h)
        assert r.status_code == 201
    reader_id = fclient.get("/api/v1/me", headers=reader_h).json()["id"]
    writer_id = fclient.get("/api/v1/me", headers=writer_h).json()["id"]
    folder = files_app.folders.create(owner, vault_id, "HR").id
    body = os.urandom(150_000)
    raw = {"Content-Type": "application/octet-stream"}
    r = fclient.post(
        f"/api/v1/vaults/{vault_id}/files",
        params={"name": "salaries.xlsx", "folder_id": folder},
        content=body,
        headers={**owner_h, **raw},
    )
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    assert r.json()["folder_id"] == folder
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=reader_h).content == body
    before = _version(files_app, fid)
    assert before.key_folder_id is None
    sealed = read_parts(files_app, before)

    # "No access" for the reader: the folder gets its own key; the file's data key moves under it.
    files_app.folders.set_access(owner, folder, reader_id, "none")
    moved = _version(files_app, fid)
    assert moved.key_folder_id == folder and moved.wrapped_key != before.wrapped_key
    assert moved.blob_id == before.blob_id and read_parts(files_app, moved) == sealed
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=reader_h).status_code == 404
    assert fclient.get(f"/api/v1/files/{fid}", headers=reader_h).status_code == 404
    assert fclient.get(f"/api/v1/vaults/{vault_id}/files", headers=reader_h).json() == []
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=owner_h).content == body
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=writer_h).content == body
    # A new version in the keyed folder is sealed under the folder's key too.
    r = fclient.put(f"/api/v1/files/{fid}/content", content=b"v2", headers={**writer_h, **raw})
    assert r.status_code == 200, r.text
    with files_app.db.read() as db:
        assert {v.key_folder_id for v in db.execute(select(FileVersion)).scalars()} == {folder}
    # The folder is not empty: it cannot be deleted.
    assert fclient.delete(f"/api/v1/folders/{folder}", headers=owner_h).status_code == 409

    # The writer leaves: the vault key and the folder key rotate; the files still open for the owner.
    assert fclient.delete(f"/api/v1/vaults/{vault_id}/members/{writer_id}", headers=owner_h).status_code == 204
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=owner_h).content == b"v2"

    # Back to inherited access: the reader sees the file again.
    files_app.folders.clear_access(owner, folder, reader_id)
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=reader_h).content == b"v2"
    names = [f["name"] for f in fclient.get(f"/api/v1/vaults/{vault_id}/files", headers=reader_h).json()]
    assert names == ["salaries.xlsx"]
    # The reader may not write in the folder; an unknown folder is a 404.
    r = fclient.post(
        f"/api/v1/vaults/{vault_id}/files",
        params={"name": "x", "folder_id": "0" * 32},
        content=b"x",
        headers={**owner_h, **raw},
    )
    assert r.status_code == 404
