"""Small helpers shared by the folder tests (API level, TestClient)."""

from __future__ import annotations

from typing import Any

from appliance.core import Appliance
from appliance.sessions import Principal


def me(client: Any, headers: dict[str, str]) -> str:
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def principal_of(app: Appliance, headers: dict[str, str]) -> Principal:
    return app.sessions.authenticate(headers["Authorization"].split(" ", 1)[1], None)


def vault_with(client: Any, owner: dict[str, str], members: dict[str, str]) -> str:
    vault = client.post("/api/v1/vaults", json={"name": "team"}, headers=owner).json()["id"]
    for email, role in members.items():
        r = client.post(f"/api/v1/vaults/{vault}/members", json={"email": email, "role": role}, headers=owner)
        assert r.status_code == 201, r.text
    return str(vault)


def folder(client: Any, headers: dict[str, str], vault: str, name: str, parent: str | None = None) -> str:
    r = client.post(f"/api/v1/vaults/{vault}/folders", json={"name": name, "parent_id": parent}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": r.json()["id"], "name": name, "parent_id": parent}
    return str(r.json()["id"])


def item(client: Any, headers: dict[str, str], vault: str, title: str, folder_id: str | None, **extra: Any) -> str:
    body = {"title": title, "password": f"pw-{title}", "folder_id": folder_id, **extra}
    r = client.post(f"/api/v1/vaults/{vault}/items", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def set_access(client: Any, headers: dict[str, str], folder_id: str, user_id: str, access: str) -> Any:
    return client.put(f"/api/v1/folders/{folder_id}/access/{user_id}", json={"access": access}, headers=headers)
