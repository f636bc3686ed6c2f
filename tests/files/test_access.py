"""Files under the vault roles (read: list/download; write: upload, replace,
delete; not a member: 404), removal of a member (data keys re-wrapped, content
untouched), limits and quotas (413 with a clear message, nothing left)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import func, select

from appliance.core import Appliance
from appliance.files.models import FileUpload, FileVersion
from tests.files.conftest import owner_with_vault, upload
from tests.support import new_user


def _member(client: Any, app: Appliance, owner: dict[str, str], vault_id: str, email: str, role: str) -> dict[str, str]:
    headers = new_user(client, app, email)
    r = client.post(f"/api/v1/vaults/{vault_id}/members", json={"email": email, "role": role}, headers=owner)
    assert r.status_code == 201, r.text
    return headers


def test_role_matrix(fs_client: Any, fs_app: Appliance) -> None:
    owner, vault_id = owner_with_vault(fs_client, fs_app)
    writer = _member(fs_client, fs_app, owner, vault_id, "writer@example.com", "write")
    reader = _member(fs_client, fs_app, owner, vault_id, "reader@example.com", "read")
    outsider = new_user(fs_client, fs_app, "outsider@example.com")
    fid = upload(fs_client, owner, vault_id, "plan.txt", b"the plan").json()["id"]
    raw = {"Content-Type": "application/octet-stream"}
    # (who, may read, may write, status when refused to read, status when refused to write)
    for who, can_read, can_write in ((owner, True, True), (writer, True, True), (reader, True, False)):
        assert fs_client.get(f"/api/v1/vaults/{vault_id}/files", headers=who).status_code == 200
        assert fs_client.get(f"/api/v1/files/{fid}", headers=who).status_code == 200
        assert fs_client.get(f"/api/v1/files/{fid}/content", headers=who).content.startswith(b"the plan")
        up = upload(fs_client, who, vault_id, "new.txt", b"x")
        assert up.status_code == (201 if can_write else 403), up.text
        put = fs_client.put(f"/api/v1/files/{fid}/content", content=b"the plan, again", headers={**who, **raw})
        assert put.status_code == (200 if can_write else 403)
        if can_write:
            assert fs_client.delete(f"/api/v1/files/{up.json()['id']}", headers=who).status_code == 204
        else:
            assert fs_client.delete(f"/api/v1/files/{fid}", headers=who).status_code == 403
    for path in (f"/api/v1/vaults/{vault_id}/files", f"/api/v1/files/{fid}", f"/api/v1/files/{fid}/content"):
        assert fs_client.get(path, headers=outsider).status_code == 404
    assert upload(fs_client, outsider, vault_id, "x", b"x").status_code == 404
    assert fs_client.put(f"/api/v1/files/{fid}/content", content=b"x", headers={**outsider, **raw}).status_code == 404
    assert fs_client.delete(f"/api/v1/files/{fid}", headers=outsider).status_code == 404
    assert fs_client.get(f"/api/v1/files/{'0' * 32}", headers=owner).status_code == 404
    assert fs_client.get(f"/api/v1/files/{fid}/content").status_code == 401


def test_removed_member_cannot_download_and_content_is_not_rewritten(fclient: Any, files_app: Appliance) -> None:
    owner, vault_id = owner_with_vault(fclient, files_app)
    leaver = _member(fclient, files_app, owner, vault_id, "leaver@example.com", "read")
    body = b"quarterly figures " * 10000
    fid = upload(fclient, owner, vault_id, "q.xlsx", body).json()["id"]
    with files_app.db.read() as db:
        before = db.execute(select(FileVersion).where(FileVersion.file_id == fid)).scalar_one()
    from tests.files.test_tamper import read_parts

    sealed_before = read_parts(files_app, before)
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=leaver).content == body
    me = fclient.get("/api/v1/me", headers=leaver).json()
    r = fclient.delete(f"/api/v1/vaults/{vault_id}/members/{me['id']}", headers=owner)
    assert r.status_code == 204, r.text
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=leaver).status_code == 404
    with files_app.db.read() as db:
        after = db.execute(select(FileVersion).where(FileVersion.file_id == fid)).scalar_one()
    assert after.key_version == before.key_version + 1
    assert after.wrapped_key != before.wrapped_key and after.meta_ct != before.meta_ct
    assert after.blob_id == before.blob_id and read_parts(files_app, after) == sealed_before
    assert fclient.get(f"/api/v1/files/{fid}/content", headers=owner).content == body
    assert fclient.get(f"/api/v1/vaults/{vault_id}/files", headers=owner).json()[0]["name"] == "q.xlsx"


def test_limits_and_quotas_answer_413(fs_client: Any, fs_app: Appliance) -> None:
    owner, vault_id = owner_with_vault(fs_client, fs_app)
    fs_app.settings = dataclasses.replace(
        fs_app.settings,
        files=dataclasses.replace(fs_app.settings.files, max_file_bytes=1000, user_quota_bytes=1500),
    )
    r = upload(fs_client, owner, vault_id, "big.bin", b"x" * 1001)
    assert r.status_code == 413 and "1000-byte limit per file" in r.json()["detail"]

    def chunked() -> Any:  # no Content-Length: the limit is enforced while streaming
        for _ in range(11):
            yield b"y" * 100

    r = fs_client.post(
        f"/api/v1/vaults/{vault_id}/files", params={"name": "stream.bin"}, content=chunked(), headers=owner
    )
    assert r.status_code == 413, r.text
    assert upload(fs_client, owner, vault_id, "ok.bin", b"z" * 1000).status_code == 201
    r = upload(fs_client, owner, vault_id, "more.bin", b"z" * 600)
    assert r.status_code == 413 and "your file quota" in r.json()["detail"]
    fs_app.settings = dataclasses.replace(
        fs_app.settings, files=dataclasses.replace(fs_app.settings.files, user_quota_bytes=0, vault_quota_bytes=1200)
    )
    r = upload(fs_client, owner, vault_id, "more.bin", b"z" * 300)
    assert r.status_code == 413 and "vault's file quota" in r.json()["detail"]
    with fs_app.db.read() as db:
        assert db.execute(select(func.count()).select_from(FileVersion)).scalar_one() == 1
        assert db.execute(select(func.count()).select_from(FileUpload)).scalar_one() == 0
    leftovers = [p for p in (fs_app.settings.data_dir / "files").rglob("*") if p.is_file()]
    assert len(leftovers) == 1  # the one accepted file's blob
