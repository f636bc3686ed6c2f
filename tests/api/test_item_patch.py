"""PUT replaces a whole item (a field left out is cleared); PATCH changes only the
fields it names (absent: unchanged, null: cleared, the title cannot be cleared)."""

from __future__ import annotations

from sqlalchemy import select

from appliance.models import AuditEntry
from tests.support import new_user

FULL = {"title": "Primary DB", "username": "postgres", "password": "s3cr3t", "url": "https://db", "notes": "monthly"}


def _setup(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    vault_id = client.post("/api/v1/vaults", json={"name": "Infra"}, headers=admin).json()["id"]
    r = client.post(f"/api/v1/vaults/{vault_id}/items", json=FULL, headers=admin)
    assert r.status_code == 201, r.text
    return admin, vault_id, r.json()["id"]


def _fields(body):
    return {k: body[k] for k in FULL}


def test_put_is_a_full_replacement(client, app):
    admin, _, item_id = _setup(client, app)
    r = client.put(
        f"/api/v1/items/{item_id}", json={"title": "Primary DB", "password": "n3w", "version": 1}, headers=admin
    )
    assert r.status_code == 200, r.text
    got = client.get(f"/api/v1/items/{item_id}", headers=admin).json()
    assert _fields(got) == {"title": "Primary DB", "username": None, "password": "n3w", "url": None, "notes": None}


def test_patch_changes_only_the_fields_given(client, app):
    admin, _, item_id = _setup(client, app)
    r = client.patch(f"/api/v1/items/{item_id}", json={"password": "n3w", "version": 1}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert _fields(r.json()) == {**FULL, "password": "n3w"}
    got = client.get(f"/api/v1/items/{item_id}", headers=admin).json()
    assert _fields(got) == {**FULL, "password": "n3w"} and got["version"] == 2
    # null clears a field; the others stay
    r = client.patch(
        f"/api/v1/items/{item_id}", json={"notes": None, "url": "https://db2", "version": 2}, headers=admin
    )
    assert r.status_code == 200, r.text
    got = client.get(f"/api/v1/items/{item_id}", headers=admin).json()
    assert _fields(got) == {**FULL, "password": "n3w", "notes": None, "url": "https://db2"} and got["version"] == 3
    with app.db.read() as db:
        entries = list(db.execute(select(AuditEntry).where(AuditEntry.event == "item.updated")).scalars())
    assert len(entries) == 2
    assert "password" in entries[0].details and "notes" in entries[1].details


def test_patch_refusals_change_nothing(client, app):
    admin, _, item_id = _setup(client, app)
    url = f"/api/v1/items/{item_id}"
    cases = [
        ({"title": None, "version": 1}, 400),  # the title cannot be cleared (not nullable in the schema)
        ({"title": "   ", "version": 1}, 422),
        ({"password": "x" * 5000, "version": 1}, 422),
        ({"password": "n3w", "version": 2}, 409),  # stale (future) version
        ({"password": "n3w"}, 400),  # the version is required
        ({"password": "n3w", "version": "1"}, 400),
        ({"password": 5, "version": 1}, 400),
        ({"Password": "n3w", "version": 1}, 400),  # unknown field
        ({"id": "0" * 32, "version": 1}, 400),
    ]
    for body, status in cases:
        r = client.patch(url, json=body, headers=admin)
        assert r.status_code == status, (body, r.status_code, r.text)
    got = client.get(url, headers=admin).json()
    assert _fields(got) == FULL and got["version"] == 1


def test_patch_needs_the_write_role(client, app):
    admin, vault_id, item_id = _setup(client, app)
    reader = new_user(client, app, "reader@example.com")
    outsider = new_user(client, app, "outsider@example.com")
    r = client.post(
        f"/api/v1/vaults/{vault_id}/members", json={"email": "reader@example.com", "role": "read"}, headers=admin
    )
    assert r.status_code == 201, r.text
    body = {"password": "stolen", "version": 1}
    assert client.patch(f"/api/v1/items/{item_id}", json=body, headers=reader).status_code == 403
    assert client.patch(f"/api/v1/items/{item_id}", json=body, headers=outsider).status_code == 404
    assert client.patch(f"/api/v1/items/{item_id}", json=body).status_code == 401
    got = client.get(f"/api/v1/items/{item_id}", headers=admin).json()
    assert _fields(got) == FULL and got["version"] == 1


def test_the_domain_refuses_to_clear_a_title(client, app):
    import pytest

    from appliance.errors import ValidationFailed

    admin, _, item_id = _setup(client, app)
    caller = app.sessions.authenticate(admin["Authorization"].split(" ", 1)[1], None)
    with pytest.raises(ValidationFailed, match="title cannot be cleared"):
        app.items.patch(caller, item_id, {"title": None}, 1)
    with pytest.raises(ValidationFailed, match="unknown item fields"):
        app.items.patch(caller, item_id, {"colour": "red"}, 1)
