"""The attacks an outside review ran against the hardened core, each now refused.
(The review's scripts asserted that each attack worked; these assert it does not.)"""

from __future__ import annotations

import os

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import object_session

from appliance.integrity.rows import bucket_of
from appliance.models import AuditEntry, AuditHead, RateLimitHit, User, VaultMember
from hsm.labels import RootKind
from tests.support import PIN, STRONG_PASSWORD, new_user


def _user(app, email):
    with app.db.read() as db:
        return db.execute(select(User).where(User.email == email)).scalar_one()


def _ticket(client, email):
    r = client.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["login_ticket"]


def test_a_pin_attempt_whose_count_cannot_be_written_is_never_tried(sqlite_client, sqlite_app):
    """A writer makes the failure count unwritable (a trigger): the attempt is counted
    before the PIN is tried, so a right PIN and a wrong one get the same answer."""
    client, app = sqlite_client, sqlite_app
    new_user(client, app, "victim@example.com")
    with app.db.write() as db:
        db.execute(
            text(
                "CREATE TRIGGER no_fail BEFORE UPDATE OF failed_pin_count ON users "
                "WHEN NEW.failed_pin_count > OLD.failed_pin_count BEGIN SELECT RAISE(ABORT, 'nope'); END"
            )
        )
    answers = set()
    for pin in ("000000", "111111", PIN):
        with app.db.write() as db:
            db.execute(delete(RateLimitHit))
        r = client.post("/api/v1/auth/unlock", json={"login_ticket": _ticket(client, "victim@example.com"), "pin": pin})
        answers.add((r.status_code, "token" in r.text))
    assert len(answers) == 1 and not next(iter(answers))[1], answers  # the same refusal for all three
    with app.db.write() as db:
        db.execute(text("DROP TRIGGER no_fail"))
    r = client.post("/api/v1/auth/unlock", json={"login_ticket": _ticket(client, "victim@example.com"), "pin": PIN})
    assert r.status_code == 200


def test_an_audit_tail_cut_with_a_head_left_without_mac_is_caught(sqlite_client, sqlite_app):
    from appliance.audit import verify

    client, app = sqlite_client, sqlite_app
    new_user(client, app, "a@example.com")
    with app.db.read() as db:
        n = db.execute(select(AuditEntry.seq).order_by(AuditEntry.seq.desc())).scalars().first()
    keep = n - 3
    with app.db.write() as db:
        last = db.execute(select(AuditEntry).where(AuditEntry.seq == keep)).scalar_one()
        db.execute(delete(AuditEntry).where(AuditEntry.seq > keep))
        db.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=keep, mac=last.mac, head_mac=None))
    with app.keystore.work() as work, app.db.read() as db:
        result = verify(db, work, None, app.integrity.deployment())
    assert not result.ok and "head row was modified" in (result.reason or "")
    r = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": STRONG_PASSWORD})
    assert r.status_code == 500  # nothing more is appended to a tampered chain


def test_a_root_planted_with_a_known_value_is_refused(sqlite_client, sqlite_app):
    """The token-PIN holder creates coffre-ukw-v<N+50> with a value they know: the next
    key pair must not be wrapped under it."""
    client, app = sqlite_client, sqlite_app
    with app.keystore.work() as work:
        top = max(i.version for i in work.list_roots() if i.kind is RootKind.UKW)
        planted = work.session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.LABEL: f"coffre-ukw-v{top + 50}",
                Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
                Attribute.VALUE: os.urandom(32),
            }
        )
        work.refresh_roots()
    try:
        token = app.accounts.invite("victim@example.com", False)[1]
        r = client.post("/api/v1/enroll", json={"token": token, "password": STRONG_PASSWORD, "pin": PIN})
        assert r.status_code == 503
        assert _user(app, "victim@example.com").private_key_blob is None
    finally:
        with app.keystore.work() as work:
            planted.destroy()
            work.refresh_roots()


@pytest.mark.parametrize("how", ["inserted", "moved into the bucket"])
def test_a_membership_planted_during_a_key_rotation_is_never_blessed(sqlite_client, sqlite_app, monkeypatch, how):
    """What a concurrent writer's commit looks like, on PostgreSQL, to the transaction
    removing a member (simulated at the moment items are re-encrypted)."""
    import appliance.folders.rotation as rotation_mod

    client, app = sqlite_client, sqlite_app
    admin = new_user(client, app, "admin@example.com")
    new_user(client, app, "bob@example.com")
    mallory = new_user(client, app, "mallory@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "read"}, headers=admin)
    item = client.post(
        f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "s3cret-vault-pw"}, headers=admin
    ).json()["id"]
    bob_id, mallory_id = _user(app, "bob@example.com").id, _user(app, "mallory@example.com").id
    planted = {
        "vault_id": vault,
        "user_id": mallory_id,
        "role": "admin",
        "wrapped_key": b"x",
        "wrapped_key_mac": None,
        "key_version": 1,
        "added_at": 0.0,
        "row_mac": "junk",
    }
    if how == "moved into the bucket":
        with app.db.write() as db:
            db.execute(insert(VaultMember).values(**planted, anchor_bucket=None))
    real, done = rotation_mod.reseal_rows, []

    def racing(work, rows, old, new, ref, folder_id=None):
        rows = list(rows)
        count = real(work, rows, old, new, ref, folder_id)
        if rows and not done:
            db = object_session(rows[0])
            if how == "inserted":
                db.execute(insert(VaultMember).values(**planted, anchor_bucket=bucket_of(vault)))
            else:
                db.execute(
                    update(VaultMember)
                    .where(VaultMember.vault_id == vault, VaultMember.user_id == mallory_id)
                    .values(anchor_bucket=bucket_of(vault))
                )
            done.append(1)
        return count

    monkeypatch.setattr(rotation_mod, "reseal_rows", racing)
    r = client.delete(f"/api/v1/vaults/{vault}/members/{bob_id}", headers=admin)
    assert r.status_code in (204, 500)  # refused (audited) when the planted row is seen
    app.keystore.cache.clear()
    read = client.get(f"/api/v1/items/{item}", headers=mallory)
    assert read.status_code != 200 and "s3cret-vault-pw" not in read.text
    assert client.get(f"/api/v1/items/{item}", headers=admin).json()["password"] == "s3cret-vault-pw"


def test_a_planted_admin_row_does_not_let_the_last_real_admin_leave(client, app):
    admin = new_user(client, app, "admin@example.com")
    new_user(client, app, "mallory@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=admin).json()["id"]
    admin_id, mallory_id = _user(app, "admin@example.com").id, _user(app, "mallory@example.com").id
    with app.db.write() as db:
        db.execute(
            insert(VaultMember).values(
                vault_id=vault,
                user_id=mallory_id,
                role="admin",
                wrapped_key=b"x",
                key_version=1,
                added_at=0.0,
                row_mac="junk",
                anchor_bucket=bucket_of(vault),
            )
        )
    r = client.patch(f"/api/v1/vaults/{vault}/members/{admin_id}", json={"role": "read"}, headers=admin)
    assert r.status_code == 409


def test_enable_reads_key_presence_under_the_row_mac(client, app):
    """Removing the key blob (not MACed before) made `enable` put an enrolled user back
    to "invited", ready to enroll again with an old link."""
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "u@example.com")
    user_id = _user(app, "u@example.com").id
    assert client.post(f"/api/v1/users/{user_id}/disable", headers=admin).status_code == 200
    with app.db.write() as db:
        db.execute(update(User).where(User.id == user_id).values(private_key_blob=None))
    r = client.post(f"/api/v1/users/{user_id}/enable", headers=admin)
    assert r.status_code == 500 and r.json()["error"] == "integrity_failure"
    assert _user(app, "u@example.com").status == "disabled"
