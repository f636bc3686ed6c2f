"""Folder keys are cryptographic: a member set to none holds no copy of a key that
opens anything there (checked with the keystore and their own private key), the
key version moves, everyone else still opens everything; a database writer cannot
raise a setting, plant one or plant a wrapped key. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, select, update

from appliance.folders.sealing import open_row
from appliance.models import Folder, FolderAccess, FolderKey, Item, ItemVersion, VaultMember
from hsm.errors import DecryptionFailed
from tests.folders.helpers import folder, item, me, principal_of, set_access, vault_with
from tests.support import new_user


def _world(c, app):
    owner = new_user(c, app, "owner@example.com")
    bob = new_user(c, app, "bob@example.com")
    carol = new_user(c, app, "carol@example.com")
    vault = vault_with(c, owner, {"bob@example.com": "write", "carol@example.com": "write"})
    return owner, bob, carol, vault


def _folder_row(app, folder_id):
    with app.db.read() as db:
        row = db.get(Folder, folder_id)
        db.expunge(row)
        return row


def test_none_is_cryptographic(client, app):
    c = client
    owner, bob, carol, vault = _world(c, app)
    bob_id, carol_id = me(c, bob), me(c, carol)
    secret = folder(c, owner, vault, "secret")
    inner = folder(c, owner, vault, "inner", secret)
    items = [item(c, owner, vault, f"s{i}", secret) for i in range(3)] + [item(c, owner, vault, "deep", inner)]
    c.put(f"/api/v1/items/{items[0]}", json={"title": "s0", "password": "pw-v2", "version": 1}, headers=owner)
    # Carol loses the folder: it gets a key, Bob holds a copy.
    assert set_access(c, owner, secret, carol_id, "none").json()["effective"] == "none"
    first = _folder_row(app, secret)
    assert first.keyed and first.key_version == 1
    with app.db.read() as db:
        bob_copy = db.get(FolderKey, (secret, bob_id)).wrapped_key
        assert db.get(FolderKey, (secret, carol_id)) is None
    assert c.get(f"/api/v1/items/{items[3]}", headers=bob).json()["password"] == "pw-deep"
    # Now Bob: the key rotates and his old copy opens nothing.
    assert set_access(c, owner, secret, bob_id, "none").status_code == 200
    second = _folder_row(app, secret)
    assert second.keyed and second.key_version == 2
    with app.db.read() as db:
        rows = list(db.execute(select(Item).where(Item.folder_id.in_([secret, inner]))).scalars())
        history = list(db.execute(select(ItemVersion).where(ItemVersion.item_id == items[0])).scalars())
        bob_wraps = [w.wrapped_key for w in db.execute(select(FolderKey).where(FolderKey.user_id == bob_id)).scalars()]
        bob_vault = db.get(VaultMember, (vault, bob_id)).wrapped_key
        for row in rows + history:
            db.expunge(row)
    assert {r.key_folder_id for r in rows} == {secret} and {r.key_version for r in rows} == {2}
    assert history and {h.key_version for h in history} == {2}
    bob_principal = principal_of(app, bob)
    with app.keystore.work() as work:
        private = app.sessions.private_key(work, bob_principal)
        keys = [work.unwrap_with_private_key(private, blob) for blob in [bob_copy, bob_vault, *bob_wraps]]
        assert len(keys) == 2  # his old folder copy and the vault key: nothing else
        for key in keys:
            for row in rows:
                with pytest.raises(DecryptionFailed):
                    open_row(work, key, row, row.id, ("password",))
            for row in history:
                with pytest.raises(DecryptionFailed):
                    open_row(work, key, row, row.item_id, ("password",))
    for who in (bob, carol):
        for item_id in items:
            r = c.get(f"/api/v1/items/{item_id}", headers=who)
            assert r.status_code == 404 and "pw-" not in r.text
    for item_id, password in zip(items, ["pw-v2", "pw-s1", "pw-s2", "pw-deep"], strict=True):
        assert c.get(f"/api/v1/items/{item_id}", headers=owner).json()["password"] == password
    assert c.get(f"/api/v1/items/{items[0]}/versions/1", headers=owner).json()["password"] == "pw-s0"
    # Giving Carol read back wraps the current key for her (no rotation needed).
    assert set_access(c, owner, secret, carol_id, "read").status_code == 200
    assert _folder_row(app, secret).key_version == 2
    assert c.get(f"/api/v1/items/{items[1]}", headers=carol).json()["password"] == "pw-s1"
    # Clearing every setting: the folder no longer needs a key, items go back under the vault key.
    for uid in (bob_id, carol_id):
        assert c.delete(f"/api/v1/folders/{secret}/access/{uid}", headers=owner).status_code == 204
    assert not _folder_row(app, secret).keyed
    assert c.get(f"/api/v1/items/{items[3]}", headers=bob).json()["password"] == "pw-deep"


def test_removing_a_member_rotates_the_folder_keys_they_held(sqlite_client, sqlite_app):
    c, app = sqlite_client, sqlite_app
    owner, bob, carol, vault = _world(c, app)
    carol_id, bob_id = me(c, carol), me(c, bob)
    secret = folder(c, owner, vault, "secret")
    kept = item(c, owner, vault, "kept", secret)
    set_access(c, owner, secret, carol_id, "none")
    assert _folder_row(app, secret).key_version == 1
    assert c.delete(f"/api/v1/vaults/{vault}/members/{bob_id}", headers=owner).status_code == 204
    row = _folder_row(app, secret)
    assert row.keyed and row.key_version == 2
    with app.db.read() as db:
        assert db.execute(select(FolderKey).where(FolderKey.user_id == bob_id)).first() is None
    assert c.get(f"/api/v1/items/{kept}", headers=owner).json()["password"] == "pw-kept"


def test_moving_a_folder_under_a_restricted_one_reseals_its_items(sqlite_client, sqlite_app):
    c, app = sqlite_client, sqlite_app
    owner, bob, carol, vault = _world(c, app)
    carol_id = me(c, carol)
    secret = folder(c, owner, vault, "secret")
    open_ = folder(c, owner, vault, "open")
    moved = item(c, owner, vault, "moved", open_)
    set_access(c, owner, secret, carol_id, "none")
    assert c.get(f"/api/v1/items/{moved}", headers=carol).status_code == 200
    r = c.patch(f"/api/v1/folders/{open_}", json={"parent_id": secret}, headers=owner)
    assert r.status_code == 200, r.text
    assert c.get(f"/api/v1/items/{moved}", headers=carol).status_code == 404
    with app.db.read() as db:
        assert db.get(Item, moved).key_folder_id == secret
    assert c.get(f"/api/v1/items/{moved}", headers=bob).json()["password"] == "pw-moved"
    # An item moved out of the restricted folder is re-sealed under the vault key.
    r = c.patch(f"/api/v1/items/{moved}", json={"version": 1, "folder_id": None}, headers=bob)
    assert r.status_code == 200, r.text
    with app.db.read() as db:
        assert db.get(Item, moved).key_folder_id is None
    assert c.get(f"/api/v1/items/{moved}", headers=carol).json()["password"] == "pw-moved"


@pytest.mark.parametrize(
    "attack", ["raised setting", "planted setting", "deleted setting", "planted wrap", "copied wrap"]
)
def test_a_database_writer_cannot_raise_access_or_plant_a_key(client, app, attack):
    c = client
    owner, bob, carol, vault = _world(c, app)
    carol_id, bob_id = me(c, carol), me(c, bob)
    secret = folder(c, owner, vault, "secret")
    inner = folder(c, owner, vault, "inner", secret)
    target = item(c, owner, vault, "target", secret)
    deeper = item(c, owner, vault, "deeper", inner)
    set_access(c, owner, secret, carol_id, "none")
    with app.db.write() as db:
        if attack == "raised setting":
            db.execute(update(FolderAccess).where(FolderAccess.user_id == carol_id).values(access="full"))
        elif attack == "deleted setting":
            db.execute(delete(FolderAccess).where(FolderAccess.user_id == carol_id))
        elif attack == "planted setting":
            bucket = db.get(FolderAccess, (secret, carol_id)).anchor_bucket
            db.execute(
                insert(FolderAccess).values(
                    folder_id=inner,
                    user_id=carol_id,
                    vault_id=vault,
                    access="full",
                    set_at=0.0,
                    set_by=bob_id,
                    row_mac="bind-v1:" + "00" * 32,
                    anchor_bucket=bucket,
                )
            )
        else:
            bobs = db.get(FolderKey, (secret, bob_id))
            fields = {k: getattr(bobs, k) for k in ("vault_id", "key_version", "wrapped_key", "anchor_bucket")}
            mac = bobs.row_mac if attack == "copied wrap" else "bind-v1:" + "00" * 32
            db.execute(
                insert(FolderKey).values(
                    folder_id=secret, user_id=carol_id, wrapped_key_mac=bobs.wrapped_key_mac, row_mac=mac, **fields
                )
            )
    app.keystore.cache.clear()
    r = c.get(f"/api/v1/items/{target}", headers=carol)
    assert r.status_code in (404, 500) and "pw-target" not in r.text
    r2 = c.get(f"/api/v1/items/{deeper}", headers=carol)
    assert r2.status_code in (404, 500) and "pw-deeper" not in r2.text
    listing = c.get(f"/api/v1/vaults/{vault}/items", headers=carol)
    assert "target" not in listing.text and "deeper" not in listing.text
    if attack in ("raised setting", "planted setting", "deleted setting"):
        assert r.status_code == 500 and r2.status_code == 500 and listing.status_code == 500
        # The next access change is refused too: nothing is re-keyed for Carol from a forged tree.
        assert set_access(c, owner, inner, bob_id, "read").status_code == 500
        with app.db.read() as db:
            assert db.execute(select(FolderKey).where(FolderKey.user_id == carol_id)).first() is None
    # The real administrator still reads everything (or the failure is audited, never a silent grant).
    assert c.get(f"/api/v1/items/{target}", headers=owner).status_code in (200, 500)


def test_deleting_a_vault_or_a_user_takes_their_folder_rows(client, app):
    c = client
    owner, bob, carol, vault = _world(c, app)
    carol_id, bob_id = me(c, carol), me(c, bob)
    secret = folder(c, owner, vault, "secret")
    inner = folder(c, owner, vault, "inner", secret)
    kept = item(c, owner, vault, "kept", inner)
    c.put(f"/api/v1/items/{kept}", json={"title": "kept", "password": "v2", "version": 1}, headers=owner)
    set_access(c, owner, secret, carol_id, "none")
    assert c.delete(f"/api/v1/folders/{secret}", headers=owner).status_code == 409
    # Deleting Bob (an administrator can open the vault): the folder key he held rotates.
    admin = new_user(c, app, "root@example.com", admin=True)
    assert c.delete(f"/api/v1/users/{bob_id}", headers=admin).status_code in (200, 204)
    row = _folder_row(app, secret)
    assert row.keyed and row.key_version >= 1
    with app.db.read() as db:
        assert db.execute(select(FolderKey).where(FolderKey.user_id == bob_id)).first() is None
    # The rotation deferred to the vault's administrator happens at their next listing.
    c.get("/api/v1/vaults", headers=owner)
    assert _folder_row(app, secret).key_version == 2
    assert c.get(f"/api/v1/items/{kept}", headers=owner).json()["password"] == "v2"
    assert c.get(f"/api/v1/items/{kept}/versions/1", headers=owner).json()["password"] == "pw-kept"
    assert c.delete(f"/api/v1/vaults/{vault}", headers=owner).status_code == 204
    with app.db.read() as db:
        for model in (Folder, FolderAccess, FolderKey, Item, ItemVersion):
            assert db.execute(select(model)).first() is None, model.__tablename__


def test_a_pin_change_rewraps_the_folder_keys_a_member_holds(sqlite_client, sqlite_app):
    from tests.support import PIN, login

    c, app = sqlite_client, sqlite_app
    owner, bob, carol, vault = _world(c, app)
    secret = folder(c, owner, vault, "secret")
    kept = item(c, owner, vault, "kept", secret)
    set_access(c, owner, secret, me(c, carol), "none")
    with app.db.read() as db:
        before = db.get(FolderKey, (secret, me(c, bob))).wrapped_key
    new_pin = "482915"
    r = c.post("/api/v1/me/pin", json={"current_pin": PIN, "new_pin": new_pin}, headers=bob)
    assert r.status_code == 204, r.text
    bob = login(c, "bob@example.com", pin=new_pin)
    with app.db.read() as db:
        assert db.get(FolderKey, (secret, me(c, bob))).wrapped_key != before
    assert c.get(f"/api/v1/items/{kept}", headers=bob).json()["password"] == "pw-kept"
