"""Public keys and wrapped vault keys are bound to their owners by an HSM MAC: a
database writer cannot redirect a vault key to a key pair of their own."""

from __future__ import annotations

from sqlalchemy import func, select

from appliance.models import AuditEntry, Item, User, VaultMember
from tests.support import new_user


def _vault(client, headers, name):
    return client.post("/api/v1/vaults", json={"name": name}, headers=headers).json()["id"]


def _integrity_entries(app) -> int:
    with app.db.read() as db:
        return db.execute(select(func.count()).where(AuditEntry.event == "integrity.failed")).scalar_one()


def test_a_swapped_public_key_is_refused_when_wrapping(client, app):
    admin = new_user(client, app, "admin@example.com")
    new_user(client, app, "bob@example.com")
    new_user(client, app, "mallory@example.com")
    vault = _vault(client, admin, "v")
    with app.db.write() as db:  # the attacker gives bob mallory's key pair (and its MAC)
        bob = db.execute(select(User).where(User.email == "bob@example.com")).scalar_one()
        mallory = db.execute(select(User).where(User.email == "mallory@example.com")).scalar_one()
        bob.public_key, bob.public_key_mac = mallory.public_key, mallory.public_key_mac
    before = _integrity_entries(app)
    r = client.post(f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "read"}, headers=admin)
    assert r.status_code == 500
    assert r.json()["error"] == "integrity_failure"
    assert _integrity_entries(app) == before + 1
    with app.db.read() as db:
        assert db.get(VaultMember, (vault, bob.id)) is None


def test_a_swapped_public_key_is_refused_during_rotation(client, app):
    admin = new_user(client, app, "admin@example.com")
    new_user(client, app, "bob@example.com")
    carol = new_user(client, app, "carol@example.com")
    vault = _vault(client, admin, "v")
    for email in ("bob@example.com", "carol@example.com"):
        r = client.post(f"/api/v1/vaults/{vault}/members", json={"email": email, "role": "read"}, headers=admin)
        assert r.status_code == 201
    carol_id = client.get("/api/v1/me", headers=carol).json()["id"]
    with app.db.write() as db:
        bob = db.execute(select(User).where(User.email == "bob@example.com")).scalar_one()
        bob.public_key = db.execute(select(User.public_key).where(User.email == "admin@example.com")).scalar_one()
    r = client.delete(f"/api/v1/vaults/{vault}/members/{carol_id}", headers=admin)
    assert r.status_code == 500  # the rotation would have wrapped the new key for a planted key
    with app.db.read() as db:
        assert db.get(VaultMember, (vault, carol_id)) is not None  # nothing changed


def test_a_planted_wrapped_key_is_refused_before_anything_is_sealed(client, app):
    admin = new_user(client, app, "admin@example.com")
    first, second = _vault(client, admin, "first"), _vault(client, admin, "second")
    admin_id = client.get("/api/v1/me", headers=admin).json()["id"]
    with app.db.write() as db:  # give "first" the key of "second": it would decrypt fine
        planted = db.get(VaultMember, (second, admin_id))
        target = db.get(VaultMember, (first, admin_id))
        target.wrapped_key, target.wrapped_key_mac = planted.wrapped_key, planted.wrapped_key_mac
    r = client.post(f"/api/v1/vaults/{first}/items", json={"title": "t", "password": "p"}, headers=admin)
    assert r.status_code == 500
    assert r.json()["error"] == "integrity_failure"
    with app.db.read() as db:
        assert db.execute(select(func.count()).select_from(Item)).scalar_one() == 0
