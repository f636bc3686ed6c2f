"""Transfers end to end through the API: password, links, unlock, downloads
(one file, all as a zip), receipts, limits under parallel downloads, expiry by
the injected clock, revocation, lock after wrong passwords, crypto-shred, and
no secret at rest."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.core import Appliance
from appliance.errors import NotFound
from appliance.files.models import FileChunk, FileVersion
from appliance.transfers.models import Transfer, TransferFile, TransferGrant
from tests.files.conftest import owner_with_vault, upload
from tests.support import FakeClock, login

PASSWORD = "Quai de la Gare 1984"
MARKER = b"SUPPLIER-CONTRACT-MARKER-7731 "


def _create(client: Any, headers: dict[str, str], **extra: Any) -> str:
    body = {"recipients": ["Supplier@Example.com", "legal@example.org"], "password": PASSWORD, **extra}
    r = client.post("/api/v1/transfers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _add(client: Any, headers: dict[str, str], tid: str, name: str, body: bytes) -> Any:
    return client.put(
        f"/api/v1/transfers/{tid}/files",
        params={"name": name},
        content=body,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def _send(client: Any, headers: dict[str, str], tid: str) -> dict[str, str]:
    r = client.post(f"/api/v1/transfers/{tid}/send", headers=headers)
    assert r.status_code == 200, r.text
    return {link["recipient"]: link["url"].rsplit("/t/", 1)[1] for link in r.json()["links"]}


def _unlock(client: Any, token: str, password: str = PASSWORD) -> Any:
    return client.post(f"/api/v1/public/transfers/{token}/unlock", json={"password": password})


def _count(app: Appliance, model: Any) -> int:
    with app.db.read() as db:
        return int(db.execute(select(func.count()).select_from(model)).scalar_one())


def _no_content_left(app: Appliance, tid: str) -> None:
    with app.db.read() as db:
        row = db.get(Transfer, tid)
        assert row is not None and row.shredded_at is not None
        assert row.wrapped_key is None and row.draft_blob is None and row.message_ct is None and row.pw_salt is None
        assert db.execute(select(func.count()).select_from(TransferFile)).scalar_one() == 0
        assert db.execute(select(func.count()).select_from(TransferGrant)).scalar_one() == 0
        vault_blobs = select(FileVersion.blob_id)
        assert db.execute(select(func.count()).where(FileChunk.blob_id.not_in(vault_blobs))).scalar_one() == 0
    vault_blobs_now = _vault_blobs(app)
    root = app.settings.data_dir / "files"
    assert {p.name for p in root.rglob("*") if p.is_file()} <= vault_blobs_now


def _vault_blobs(app: Appliance) -> set[str]:
    with app.db.read() as db:
        return set(db.execute(select(FileVersion.blob_id)).scalars())


def test_transfer_end_to_end(fclient: Any, files_app: Appliance, store: str) -> None:
    headers, vault_id = owner_with_vault(fclient, files_app)
    vault_body = MARKER * 5000
    vault_file = upload(fclient, headers, vault_id, "contrat.pdf", vault_body).json()["id"]
    tid = _create(fclient, headers, message="Voici le contrat", max_downloads=3)
    direct = MARKER * 70000 + b"end"
    r = _add(fclient, headers, tid, "annexe.bin", direct)
    assert r.status_code == 201, r.text
    r = fclient.post(f"/api/v1/transfers/{tid}/files", json={"file_id": vault_file}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "contrat.pdf"
    links = _send(fclient, headers, tid)
    assert sorted(links) == ["legal@example.org", "supplier@example.com"]
    # Nothing more may be added once sent; the draft's KEK copy is gone.
    assert _add(fclient, headers, tid, "late.txt", b"x").status_code == 409
    with files_app.db.read() as db:
        row = db.get(Transfer, tid)
        assert row is not None and row.draft_blob is None and row.kek_label is None
    token = links["supplier@example.com"]
    assert _unlock(fclient, token, "wrong password!").status_code == 404
    assert _unlock(fclient, "x" * 43).status_code == 404
    r = _unlock(fclient, token)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["message"] == "Voici le contrat"
    files = {f["name"]: f for f in out["files"]}
    assert set(files) == {"annexe.bin", "contrat.pdf"}
    dl = out["download_token"]
    got = fclient.get(
        f"/api/v1/public/transfers/{token}/files/{files['annexe.bin']['id']}", params={"download_token": dl}
    )
    assert got.status_code == 200 and got.content == direct
    assert got.headers["content-disposition"].startswith("attachment;")
    z = fclient.get(f"/api/v1/public/transfers/{token}/files/all", params={"download_token": dl})
    assert z.status_code == 200
    with zipfile.ZipFile(io.BytesIO(z.content)) as archive:
        assert archive.read("annexe.bin") == direct and archive.read("contrat.pdf") == vault_body
    # Another recipient's token does not go with this download token.
    other = links["legal@example.org"]
    bad = fclient.get(
        f"/api/v1/public/transfers/{other}/files/{files['annexe.bin']['id']}", params={"download_token": dl}
    )
    assert bad.status_code == 404
    listed = fclient.get("/api/v1/transfers", headers=headers).json()
    assert listed[0]["id"] == tid and listed[0]["status"] == "sent"
    supplier = next(r for r in listed[0]["recipients"] if r["email"] == "supplier@example.com")
    assert supplier["downloads"] == 2
    kinds = [e["kind"] for e in supplier["receipts"]]
    assert kinds == ["failed_password", "unlocked", "downloaded", "downloaded"]
    assert all(e["at"] and "address" in e for e in supplier["receipts"])
    # The third download is the last allowed for this recipient.
    dl2 = _unlock(fclient, token).json()["download_token"]
    assert fclient.get(f"/api/v1/public/transfers/{token}/files/all", params={"download_token": dl2}).status_code == 200
    assert _unlock(fclient, token).status_code == 404
    # Revocation: the other recipient can no longer open it; keys and chunks are gone.
    assert fclient.delete(f"/api/v1/transfers/{tid}", headers=headers).status_code == 204
    assert _unlock(fclient, other).status_code == 404
    _no_content_left(files_app, tid)
    # The vault file itself is untouched.
    assert fclient.get(f"/api/v1/files/{vault_file}/content", headers=headers).content == vault_body


def test_parallel_downloads_at_the_limit(fclient: Any, files_app: Appliance) -> None:
    headers, _ = owner_with_vault(fclient, files_app)
    tid = _create(fclient, headers, recipients=["one@example.com"], max_downloads=3)
    fid = _add(fclient, headers, tid, "a.bin", b"payload" * 1000).json()["id"]
    token = _send(fclient, headers, tid)["one@example.com"]
    dl = _unlock(fclient, token).json()["download_token"]
    results: list[str] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        try:
            _, stream = files_app.transfer_access.download(token, fid, dl, "192.0.2.7")
            assert b"".join(stream) == b"payload" * 1000
            results.append("ok")
        except NotFound:
            results.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 3 and results.count("refused") == 5
    # The last allowed download completed the transfer: shredded.
    _no_content_left(files_app, tid)
    assert fclient.get("/api/v1/transfers", headers=headers).json()[0]["status"] == "completed"


def test_expiry_by_the_clock_and_lock_after_wrong_passwords(
    fs_client: Any, fs_app: Appliance, clock: FakeClock
) -> None:
    from appliance.transfers.shred import sweep

    headers, _ = owner_with_vault(fs_client, fs_app)
    tid = _create(fs_client, headers, recipients=["a@example.com"], expires_in_hours=2)
    _add(fs_client, headers, tid, "a.txt", b"hello")
    token = _send(fs_client, headers, tid)["a@example.com"]
    assert _unlock(fs_client, token).status_code == 200
    clock.advance(2 * 3600 + 1)
    assert _unlock(fs_client, token).status_code == 404
    assert sweep(fs_app) == 1
    _no_content_left(fs_app, tid)
    headers = login(fs_client, "owner@example.com")  # the session idled out meanwhile
    assert fs_client.get("/api/v1/transfers", headers=headers).json()[0]["status"] == "expired"
    # Lock: five wrong passwords, then even the right one is refused; the sender sees it.
    tid2 = _create(fs_client, headers, recipients=["b@example.com"])
    _add(fs_client, headers, tid2, "b.txt", b"hello")
    token2 = _send(fs_client, headers, tid2)["b@example.com"]
    for _ in range(5):
        assert _unlock(fs_client, token2, "not the password").status_code == 404
    assert _unlock(fs_client, token2).status_code == 404
    mine = next(t for t in fs_client.get("/api/v1/transfers", headers=headers).json() if t["id"] == tid2)
    assert mine["status"] == "locked" and mine["failed_passwords"] == 5
    events = [e["event"] for e in _audit(fs_app)]
    for name in (
        "transfer.created",
        "transfer.sent",
        "transfer.unlocked",
        "transfer.failed_password",
        "transfer.locked",
        "transfer.expired",
        "transfer.shredded",
    ):
        assert name in events, name


def _audit(app: Appliance) -> list[dict[str, Any]]:
    from appliance.models import AuditEntry

    with app.db.read() as db:
        return [{"event": e.event} for e in db.execute(select(AuditEntry)).scalars()]


def test_bad_input_and_other_users(fs_client: Any, fs_app: Appliance) -> None:
    from tests.support import new_user

    headers, _ = owner_with_vault(fs_client, fs_app)
    for body in (
        {"recipients": [], "password": PASSWORD},
        {"recipients": ["not an address"], "password": PASSWORD},
        {"recipients": ["a@example.com"]},
        {"recipients": ["a@example.com"], "password": "short"},
        {"recipients": ["a@example.com"], "password": PASSWORD, "expires_in_hours": 24 * 31},
        {"recipients": ["a@example.com"], "password": PASSWORD, "max_downloads": 0},
        {"recipients": ["a@example.com"], "password": PASSWORD, "email_codes": True},
    ):
        r = fs_client.post("/api/v1/transfers", json=body, headers=headers)
        assert r.status_code in (400, 422), body
    assert _count(fs_app, Transfer) == 0
    tid = _create(fs_client, headers)
    assert fs_client.post(f"/api/v1/transfers/{tid}/send", headers=headers).status_code == 409  # no file yet
    other = new_user(fs_client, fs_app, "mallory@example.com")
    assert _add(fs_client, other, tid, "x", b"x").status_code == 404
    assert fs_client.post(f"/api/v1/transfers/{tid}/send", headers=other).status_code == 404
    assert fs_client.delete(f"/api/v1/transfers/{tid}", headers=other).status_code == 404
    assert fs_client.get("/api/v1/transfers", headers=other).json() == []


def test_no_secret_at_rest(fs_client: Any, fs_app: Appliance, tmp_path: Path) -> None:
    headers, vault_id = owner_with_vault(fs_client, fs_app)
    upload(fs_client, headers, vault_id, "secret.txt", MARKER * 100)
    tid = _create(fs_client, headers, message="the code word is PAMPLEMOUSSE")
    _add(fs_client, headers, tid, "t.txt", MARKER * 100)
    token = _send(fs_client, headers, tid)["supplier@example.com"]
    dl = _unlock(fs_client, token).json()["download_token"]
    fs_app.db.dispose()  # let SQLite fold its WAL into the file
    needles = [MARKER, PASSWORD.encode(), b"PAMPLEMOUSSE", token.encode(), dl.encode(), b"secret.txt", b"t.txt"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, (needle, path)


@pytest.mark.parametrize("zip_names", [["a.txt", "a.txt", "b"]])
def test_zip_names_are_unique(zip_names: list[str]) -> None:
    from appliance.transfers.zipstream import zip_stream

    data = b"".join(zip_stream((n, iter([n.encode()])) for n in zip_names))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a.txt", "a (2).txt", "b"]


def test_an_administrator_policy_lowers_the_longest_expiry(fs_client: Any, fs_app: Appliance) -> None:
    import dataclasses

    headers, _ = owner_with_vault(fs_client, fs_app)
    files = dataclasses.replace(fs_app.settings.files, transfer_max_expires_hours=48)
    fs_app.settings = dataclasses.replace(fs_app.settings, files=files)
    too_long = {"recipients": ["a@example.com"], "password": PASSWORD, "expires_in_hours": 72}
    r = fs_client.post("/api/v1/transfers", json=too_long, headers=headers)
    assert r.status_code == 422 and "from 1 to 48" in r.json()["detail"]
    assert fs_client.post("/api/v1/transfers", json={**too_long, "expires_in_hours": 48}, headers=headers).is_success
    default = fs_client.post(
        "/api/v1/transfers", json={"recipients": ["a@example.com"], "password": PASSWORD}, headers=headers
    )
    mine = next(
        t for t in fs_client.get("/api/v1/transfers", headers=headers).json() if t["id"] == default.json()["id"]
    )
    from datetime import datetime

    span = datetime.fromisoformat(mine["expires_at"]) - datetime.fromisoformat(mine["created_at"])
    assert span.total_seconds() == 48 * 3600  # the default (7 days) is capped by the policy
