"""Deposit boxes: outsiders drop files into a vault (password, size limit,
closing date), nothing readable on arrival, adopted under the vault key by the
first member who lists the vault, survives a vault key rotation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from appliance.core import Appliance
from appliance.transfers.models import DepositBox, DepositFile
from tests.files.conftest import owner_with_vault
from tests.support import FakeClock, login, new_user

BOX_PASSWORD = "drop it here 2031"


def _deposit(client: Any, token: str, name: str, body: bytes, password: str | None = BOX_PASSWORD) -> Any:
    headers = {"Content-Type": "application/octet-stream"}
    if password is not None:
        headers["X-Deposit-Password"] = password
    return client.put(f"/api/v1/public/deposits/{token}/files", params={"name": name}, content=body, headers=headers)


def test_deposit_box_round_trip(fclient: Any, files_app: Appliance, clock: FakeClock) -> None:
    owner, vault_id = owner_with_vault(fclient, files_app)
    r = fclient.post(
        "/api/v1/deposits",
        json={"vault_id": vault_id, "password": BOX_PASSWORD, "max_bytes": 5000, "closes_at": "2031-01-01T00:00:00Z"},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    token = r.json()["url"].rsplit("/d/", 1)[1]
    assert _deposit(fclient, token, "invoice.pdf", b"INVOICE-MARKER" * 100).status_code == 201
    assert _deposit(fclient, token, "second.pdf", b"x" * 2000).status_code == 201
    assert _deposit(fclient, token, "too-big.bin", b"y" * 2000).status_code == 413  # 4,400 + 2,000 > 5,000
    assert _deposit(fclient, token, "x.bin", b"z", password="wrong password!").status_code == 404
    assert _deposit(fclient, token, "x.bin", b"z", password=None).status_code == 404
    assert _deposit(fclient, "A" * 43, "x.bin", b"z").status_code == 404
    with files_app.db.read() as db:
        assert db.execute(select(func.count()).select_from(DepositFile)).scalar_one() == 2
    assert fclient.get("/api/v1/deposits", headers=owner).json()[0]["pending"] == 2
    # A vault key rotation before adoption re-wraps the deposit key too.
    leaver = new_user(fclient, files_app, "leaver@example.com")
    fclient.post(
        f"/api/v1/vaults/{vault_id}/members", json={"email": "leaver@example.com", "role": "read"}, headers=owner
    )
    leaver_id = fclient.get("/api/v1/me", headers=leaver).json()["id"]
    assert fclient.delete(f"/api/v1/vaults/{vault_id}/members/{leaver_id}", headers=owner).status_code == 204
    listed = fclient.get(f"/api/v1/vaults/{vault_id}/files", headers=owner).json()  # adopts
    assert sorted(f["name"] for f in listed) == ["invoice.pdf", "second.pdf"]
    with files_app.db.read() as db:
        assert db.execute(select(func.count()).select_from(DepositFile)).scalar_one() == 0
    invoice = next(f for f in listed if f["name"] == "invoice.pdf")
    assert fclient.get(f"/api/v1/files/{invoice['id']}/content", headers=owner).content == b"INVOICE-MARKER" * 100
    # Closing date by the clock; then closing by the owner erases the KEK copy of the box key.
    clock.advance(10 * 365 * 86400)
    assert _deposit(fclient, token, "late.bin", b"z").status_code == 404
    owner = login(fclient, "owner@example.com")
    box_id = r.json()["id"]
    assert fclient.delete(f"/api/v1/deposits/{box_id}", headers=owner).status_code == 204
    with files_app.db.read() as db:
        box = db.get(DepositBox, box_id)
        assert box is not None and box.sealed_key is None and box.kek_label is None and box.token_hash is None


def test_deposit_rules(fs_client: Any, fs_app: Appliance) -> None:
    owner, vault_id = owner_with_vault(fs_client, fs_app)
    reader = new_user(fs_client, fs_app, "reader@example.com")
    fs_client.post(
        f"/api/v1/vaults/{vault_id}/members", json={"email": "reader@example.com", "role": "read"}, headers=owner
    )
    assert fs_client.post("/api/v1/deposits", json={"vault_id": vault_id}, headers=reader).status_code == 403
    outsider = new_user(fs_client, fs_app, "out@example.com")
    assert fs_client.post("/api/v1/deposits", json={"vault_id": vault_id}, headers=outsider).status_code == 404
    for bad in (
        {"vault_id": vault_id, "closes_at": "tomorrow"},
        {"vault_id": vault_id, "max_bytes": 0},
        {"vault_id": vault_id, "password": "short"},
        {"vault_id": vault_id, "folder_id": "0" * 32},
    ):
        assert fs_client.post("/api/v1/deposits", json=bad, headers=owner).status_code == 422, bad
    # No password: anyone with the link may deposit; five wrong passwords lock a box that has one.
    open_box = fs_client.post("/api/v1/deposits", json={"vault_id": vault_id}, headers=owner).json()
    assert _deposit(fs_client, open_box["url"].rsplit("/d/", 1)[1], "a.txt", b"a", password=None).status_code == 201
    locked = fs_client.post("/api/v1/deposits", json={"vault_id": vault_id, "password": BOX_PASSWORD}, headers=owner)
    token = locked.json()["url"].rsplit("/d/", 1)[1]
    for _ in range(5):
        assert _deposit(fs_client, token, "a.txt", b"a", password="not it at all").status_code == 404
    assert _deposit(fs_client, token, "a.txt", b"a").status_code == 404
