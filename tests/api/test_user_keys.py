"""User key pairs rotate: at a PIN change, at an administrator's request, and when
they are older than the configured age. The data stays readable, the old pair's
blobs and wrapped copies are replaced, and the other sessions end."""

from __future__ import annotations

from sqlalchemy import select

from appliance.models import AuditEntry, User, VaultMember
from tests.support import PIN, STRONG_PASSWORD, login, new_user

NEW_PIN = "193746"


def _user(app, email) -> User:
    with app.db.read() as db:
        return db.execute(select(User).where(User.email == email)).scalar_one()


def _setup(client, app):
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "team"}, headers=alice).json()["id"]
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "alice@example.com", "role": "read"}, headers=bob)
    r = client.post(
        f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "write"}, headers=alice
    )
    assert r.status_code == 201
    item = client.post(
        f"/api/v1/vaults/{vault}/items", json={"title": "db", "password": "s3cr3t"}, headers=alice
    ).json()["id"]
    return alice, bob, vault, item


def _wrapped(app, user_id):
    with app.db.read() as db:
        return {
            m.vault_id: m.wrapped_key
            for m in db.execute(select(VaultMember).where(VaultMember.user_id == user_id)).scalars()
        }


def test_changing_the_pin_rotates_the_pair_keeps_this_session_and_ends_the_others(client, app):
    alice, _, _, item = _setup(client, app)
    other = login(client, "alice@example.com")
    before = _user(app, "alice@example.com")
    wrapped_before = _wrapped(app, before.id)
    r = client.post("/api/v1/me/pin", json={"current_pin": PIN, "new_pin": NEW_PIN}, headers=alice)
    assert r.status_code == 204, r.text
    after = _user(app, "alice@example.com")
    assert after.key_generation == before.key_generation + 1
    assert after.public_key != before.public_key and after.private_key_blob != before.private_key_blob
    assert all(_wrapped(app, after.id)[v] != w for v, w in wrapped_before.items())
    assert client.get(f"/api/v1/items/{item}", headers=alice).json()["password"] == "s3cr3t"  # this session
    assert client.get("/api/v1/me", headers=other).status_code == 401  # the others ended
    ticket = client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD})
    assert (
        client.post("/api/v1/auth/unlock", json={"login_ticket": ticket.json()["login_ticket"], "pin": PIN}).status_code
        == 401
    )
    fresh = login(client, "alice@example.com", pin=NEW_PIN)
    assert client.get(f"/api/v1/items/{item}", headers=fresh).json()["password"] == "s3cr3t"


def test_a_wrong_current_pin_counts_like_a_wrong_pin_at_unlock(client, app):
    alice = new_user(client, app, "alice@example.com")
    answers = [
        client.post("/api/v1/me/pin", json={"current_pin": "000000", "new_pin": NEW_PIN}, headers=alice).status_code
        for _ in range(app.settings.security.max_pin_failures)
    ]
    assert answers[:-1] == [401] * (len(answers) - 1) and answers[-1] == 423
    assert _user(app, "alice@example.com").locked
    assert client.get("/api/v1/me", headers=alice).status_code == 401  # the lock ended the session


def test_an_administrator_asks_and_the_pair_rotates_at_the_next_unlock(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    _, bob, _, item = _setup(client, app)
    bob_id = _user(app, "bob@example.com").id
    generation = _user(app, "bob@example.com").key_generation
    r = client.post(f"/api/v1/users/{bob_id}/rotate-key", headers=admin)
    assert r.status_code == 200
    assert _user(app, "bob@example.com").key_rotation_due
    assert client.get(f"/api/v1/items/{item}", headers=bob).status_code == 200  # nothing changes until then
    fresh = login(client, "bob@example.com")
    after = _user(app, "bob@example.com")
    assert after.key_generation == generation + 1 and not after.key_rotation_due
    assert client.get(f"/api/v1/items/{item}", headers=fresh).json()["password"] == "s3cr3t"
    assert client.get("/api/v1/me", headers=bob).status_code == 401  # the old session held the old key
    with app.db.read() as db:
        events = [e.event for e in db.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()]
    assert "user.key_rotation_requested" in events and "user.key_rotated" in events
    assert client.post(f"/api/v1/users/{bob_id}/rotate-key", headers=fresh).status_code == 403  # admins only


def test_a_pair_older_than_the_configured_age_rotates_at_unlock(client, app, clock):
    _, _, _, item = _setup(client, app)
    generation = _user(app, "bob@example.com").key_generation
    clock.advance(app.settings.crypto.user_key_max_age_days * 86400 + 1)
    fresh = login(client, "bob@example.com")
    assert _user(app, "bob@example.com").key_generation == generation + 1
    assert client.get(f"/api/v1/items/{item}", headers=fresh).json()["password"] == "s3cr3t"


def test_a_vault_shared_after_the_rotation_is_wrapped_to_the_new_key(client, app):
    alice, bob, _, _ = _setup(client, app)
    assert client.post("/api/v1/me/pin", json={"current_pin": PIN, "new_pin": NEW_PIN}, headers=bob).status_code == 204
    later = client.post("/api/v1/vaults", json={"name": "later"}, headers=alice).json()["id"]
    r = client.post(f"/api/v1/vaults/{later}/members", json={"email": "bob@example.com", "role": "read"}, headers=alice)
    assert r.status_code == 201
    client.post(f"/api/v1/vaults/{later}/items", json={"title": "x", "password": "y"}, headers=alice)
    assert client.get(f"/api/v1/vaults/{later}/items", headers=bob).status_code == 200
