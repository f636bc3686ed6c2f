"""Offboarding: a deleted user's vaults get new keys (at once, or at the next action
of one of their administrators), none of their wrapped copies, sessions or key
blobs remain, the audit verifies and still names them, the last-admin rule holds
(or --transfer-to keeps every vault administered), and the address can be invited
again as a new person who sees nothing of the old account."""

from __future__ import annotations

from sqlalchemy import select

from appliance import audit
from appliance.audit_view import AuditFilters, page
from appliance.models import Session, User, Vault, VaultMember, VaultRotationDue
from appliance.sessions import Principal
from tests.support import enroll, invite, login, new_user


def _id(app, email):
    with app.db.read() as db:
        return db.execute(select(User.id).where(User.email == email)).scalar_one()


def _versions(app, *vaults):
    with app.db.read() as db:
        return {v: db.get(Vault, v).key_version for v in vaults}


def _members(app, vault):
    with app.db.read() as db:
        return {
            m.user_id: m.role for m in db.execute(select(VaultMember).where(VaultMember.vault_id == vault)).scalars()
        }


def _vault(client, headers, name, *members):
    vault = client.post("/api/v1/vaults", json={"name": name}, headers=headers).json()["id"]
    for email, role in members:
        r = client.post(f"/api/v1/vaults/{vault}/members", json={"email": email, "role": role}, headers=headers)
        assert r.status_code == 201, r.text
    item = client.post(f"/api/v1/vaults/{vault}/items", json={"title": name, "password": "pw-" + name}, headers=headers)
    return vault, item.json()["id"]


def _audit_ok(app):
    with app.keystore.work() as work, app.db.read() as db:
        result = audit.verify(db, work)
    assert result.ok, result.reason


def test_delete_rotates_now_or_at_the_next_admin_action_and_leaves_nothing(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    dave = new_user(client, app, "dave@example.com")
    carol = new_user(client, app, "carol@example.com")
    shared, item1 = _vault(client, admin, "shared", ("dave@example.com", "write"))  # the admin can open it
    theirs, item2 = _vault(client, carol, "carols", ("dave@example.com", "read"))  # the admin cannot
    client.post("/api/v1/vaults", json={"name": "x"}, headers=dave)  # dave's own vault, dave sole admin
    dave_id = _id(app, "dave@example.com")
    before = _versions(app, shared, theirs)

    r = client.delete(f"/api/v1/users/{dave_id}", headers=admin)
    assert r.status_code == 409 and "last administrator" in r.json()["detail"]
    assert client.get("/api/v1/me", headers=dave).status_code == 200  # a refusal changes nothing
    with app.db.read() as db:
        own = db.execute(
            select(VaultMember.vault_id).where(VaultMember.user_id == dave_id, VaultMember.role == "admin")
        ).scalar_one()
    r = client.delete(f"/api/v1/users/{dave_id}", params={"transfer_to": "carol@example.com"}, headers=admin)
    assert r.status_code == 409 and "transfer target" in r.json()["detail"]  # carol is not a member, admin cannot open
    client.post(f"/api/v1/vaults/{own}/members", json={"email": "carol@example.com", "role": "read"}, headers=dave)

    r = client.delete(f"/api/v1/users/{dave_id}", params={"transfer_to": "carol@example.com"}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["vaults"], body["rotated"], body["rotation_deferred"], body["transferred"]) == (3, 1, 2, 1)
    assert client.get("/api/v1/me", headers=dave).status_code == 401  # refused at once
    with app.db.read() as db:
        assert db.get(User, dave_id) is None
        assert not db.execute(select(VaultMember).where(VaultMember.user_id == dave_id)).all()
        assert not db.execute(select(Session).where(Session.user_id == dave_id)).all()
        assert {r.vault_id for r in db.execute(select(VaultRotationDue)).scalars()} == {theirs, own}
    assert _members(app, own)[_id(app, "carol@example.com")] == "admin"  # every vault still administered
    assert _versions(app, shared)[shared] == before[shared] + 1  # rotated at once
    assert _versions(app, theirs)[theirs] == before[theirs]  # deferred...
    assert client.get("/api/v1/vaults", headers=carol).status_code == 200  # ...to carol's next action
    assert _versions(app, theirs)[theirs] == before[theirs] + 1
    with app.db.read() as db:
        assert not db.execute(select(VaultRotationDue)).all()
    assert client.get(f"/api/v1/items/{item1}", headers=admin).json()["password"] == "pw-shared"
    assert client.get(f"/api/v1/items/{item2}", headers=carol).json()["password"] == "pw-carols"
    _audit_ok(app)
    admin_principal = Principal(_id(app, "admin@example.com"), "admin@example.com", True, "", None, b"", None, 0.0)  # type: ignore[arg-type]
    rows = page(app, admin_principal, AuditFilters(actor=dave_id)).rows
    assert rows and all(r.actor_email == "dave@example.com" for r in rows)  # past entries still name them

    token = invite(app, "dave@example.com")  # the address can be invited again
    assert enroll(client, token).status_code == 201
    assert _id(app, "dave@example.com") != dave_id
    again = login(client, "dave@example.com")
    assert client.get("/api/v1/vaults", headers=again).json() == []


def test_only_administrators_delete_and_not_themselves(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    user = new_user(client, app, "u@example.com")
    assert client.delete(f"/api/v1/users/{_id(app, 'admin@example.com')}", headers=user).status_code == 403
    assert client.delete(f"/api/v1/users/{_id(app, 'admin@example.com')}", headers=admin).status_code == 409
    assert client.delete("/api/v1/users/" + "0" * 32, headers=admin).status_code == 404
    assert client.get("/api/v1/me", headers=user).status_code == 200
