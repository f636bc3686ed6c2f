from __future__ import annotations

from tests.support import new_user


def test_full_flow_in_process(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    r = client.get("/api/v1/me", headers=admin)
    assert r.status_code == 200
    assert r.json()["is_admin"] is True
    r = client.post("/api/v1/vaults", json={"name": "Ops"}, headers=admin)
    assert r.status_code == 201, r.text
    vault = r.json()
    assert vault["role"] == "admin"
    r = client.post(
        f"/api/v1/vaults/{vault['id']}/items", json={"title": "db", "password": "s3cret-value"}, headers=admin
    )
    assert r.status_code == 201, r.text
    item = r.json()
    r = client.get(f"/api/v1/items/{item['id']}", headers=admin)
    assert r.json()["password"] == "s3cret-value"
