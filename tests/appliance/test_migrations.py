"""Schema migrations apply on top of each other, and rows that predate the
bindings are bound by `coffre init` (backfill) so they keep working."""

from __future__ import annotations

from sqlalchemy import inspect, update

from appliance import schema
from appliance.bindings import backfill
from appliance.db import Database
from appliance.models import User, VaultMember
from tests.support import new_user


def test_upgrade_from_the_first_revision(database_url):
    db = Database(database_url)
    try:
        schema.upgrade(db.engine, "0001")
        assert schema.current_revision(db.engine) == "0001"
        assert "wrapped_key_mac" not in {c["name"] for c in inspect(db.engine).get_columns("vault_members")}
        schema.upgrade(db.engine)
        assert schema.current_revision(db.engine) == schema.head_revision() == "0002"
        assert "wrapped_key_mac" in {c["name"] for c in inspect(db.engine).get_columns("vault_members")}
    finally:
        db.dispose()


def test_rows_from_before_the_bindings_are_backfilled(client, app):
    headers = new_user(client, app, "old@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "old"}, headers=headers).json()["id"]
    item = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "p"}, headers=headers).json()
    with app.db.write() as db:  # as written by schema 0001
        db.execute(update(User).values(public_key_mac=None))
        db.execute(update(VaultMember).values(wrapped_key_mac=None))
    app.keystore.cache.clear()
    assert client.get(f"/api/v1/items/{item['id']}", headers=headers).status_code == 500  # unbound: refused
    with app.keystore.work() as work, app.db.write() as db:
        assert backfill(db, work) == (1, 1)
    assert client.get(f"/api/v1/items/{item['id']}", headers=headers).json()["password"] == "p"
    with app.keystore.work() as work, app.db.write() as db:
        assert backfill(db, work) == (0, 0)
