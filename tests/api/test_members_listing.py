"""GET /vaults/{id}/members answers exactly [{user_id, email, role}], and the user_id
it gives is what PATCH and DELETE /vaults/{id}/members/{user_id} take."""

from __future__ import annotations

from tests.support import new_user


def test_members_list_shape_and_removal_by_the_listed_id(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    alice = new_user(client, app, "alice@example.com")
    vault_id = client.post("/api/v1/vaults", json={"name": "Infra"}, headers=admin).json()["id"]
    r = client.post(
        f"/api/v1/vaults/{vault_id}/members", json={"email": "alice@example.com", "role": "read"}, headers=admin
    )
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"user_id", "email", "role"}
    members = client.get(f"/api/v1/vaults/{vault_id}/members", headers=admin).json()
    assert all(set(m) == {"user_id", "email", "role"} for m in members), members
    assert sorted((m["email"], m["role"]) for m in members) == [
        ("admin@example.com", "admin"),
        ("alice@example.com", "read"),
    ]
    alice_id = next(m["user_id"] for m in members if m["email"] == "alice@example.com")
    assert alice_id == client.get("/api/v1/me", headers=alice).json()["id"]
    r = client.patch(f"/api/v1/vaults/{vault_id}/members/{alice_id}", json={"role": "write"}, headers=admin)
    assert r.status_code == 200 and r.json() == {"user_id": alice_id, "email": "alice@example.com", "role": "write"}
    assert client.get(f"/api/v1/vaults/{vault_id}", headers=alice).status_code == 200
    assert client.delete(f"/api/v1/vaults/{vault_id}/members/{alice_id}", headers=admin).status_code == 204
    assert [m["email"] for m in client.get(f"/api/v1/vaults/{vault_id}/members", headers=admin).json()] == [
        "admin@example.com"
    ]
    assert client.get(f"/api/v1/vaults/{vault_id}", headers=alice).status_code == 404


def test_roles_are_spelled_in_lowercase_only(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "alice@example.com")
    vault_id = client.post("/api/v1/vaults", json={"name": "Infra"}, headers=admin).json()["id"]
    for role in ("READ", "Write", "owner", ""):
        body = {"email": "alice@example.com", "role": role}
        assert client.post(f"/api/v1/vaults/{vault_id}/members", json=body, headers=admin).status_code == 400, role
