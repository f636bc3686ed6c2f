"""Schema migrations apply on top of each other. Rows written before their MACs
existed are adopted once per token, by the first `coffre init` after the upgrade,
and never again: a NULL MAC planted later by a database writer is refused."""

from __future__ import annotations

import os

from sqlalchemy import inspect, update

from appliance import schema
from appliance.core import Appliance
from appliance.db import Database
from appliance.integrity.adoption import adopt_once
from appliance.models import Session, User, Vault, VaultMember
from appliance.setup import InitReport, create_lab_token, find_softhsm
from hsm.config import HsmConfig
from tests.conftest import dismantle, make_settings
from tests.support import FakeClock, new_user
from web.app import create_app


def test_upgrade_from_the_first_revision(database_url):
    db = Database(database_url)
    try:
        schema.upgrade(db.engine, "0001")
        assert schema.current_revision(db.engine) == "0001"
        assert "wrapped_key_mac" not in {c["name"] for c in inspect(db.engine).get_columns("vault_members")}
        schema.upgrade(db.engine)
        assert schema.current_revision(db.engine) == schema.head_revision()
        assert "row_mac" in {c["name"] for c in inspect(db.engine).get_columns("vault_members")}
        assert "mac" in {c["name"] for c in inspect(db.engine).get_columns("login_tickets")}
    finally:
        db.dispose()


def _unbind(app):
    """What a database writer (or a schema-0001 database) leaves: no MACs."""
    with app.db.write() as db:
        db.execute(update(User).values(public_key_mac=None, row_mac=None))
        db.execute(update(VaultMember).values(wrapped_key_mac=None, row_mac=None))
        db.execute(update(Vault).values(row_mac=None))
        db.execute(update(Session).values(row_mac=None))
    app.keystore.cache.clear()


def test_unbound_rows_planted_after_adoption_are_refused_and_never_rebound(client, app):
    """The outside review's attack: NULL a MAC, wait for the next `coffre init`."""
    headers = new_user(client, app, "old@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "old"}, headers=headers).json()["id"]
    item = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "p"}, headers=headers).json()
    adopt_once(app)  # this token's one adoption (or a no-op if an earlier test did it)
    _unbind(app)
    assert client.get(f"/api/v1/items/{item['id']}", headers=headers).status_code == 500
    again = adopt_once(app)  # what every later `coffre init` runs
    assert not again.done_now and again.public_keys == again.wrapped_keys == again.rows == 0
    with app.db.read() as db:
        assert db.query(User).filter(User.public_key_mac.is_(None)).count() == 1
        assert db.query(VaultMember).filter(VaultMember.row_mac.is_(None)).count() == 1
    assert client.get(f"/api/v1/items/{item['id']}", headers=headers).status_code == 500
    events = [e for e in _events(app) if e == "integrity.failed"]
    assert events, "the refusal is audited"


def _events(app):
    from appliance.models import AuditEntry

    with app.db.read() as db:
        return [e.event for e in db.query(AuditEntry).order_by(AuditEntry.seq)]


def test_rows_from_before_the_macs_are_adopted_exactly_once_per_token(tmp_path, sqlite_url):
    """On a token that never adopted (a deployment upgrading from schema 0002), the
    first run binds the rows as they are; the second finds the marker and binds nothing."""
    module = find_softhsm()
    before = os.environ.get("SOFTHSM2_CONF")
    conf, pin_file = create_lab_token(tmp_path / "token", module, "legacy", InitReport(tmp_path / "x"))
    hsm = HsmConfig(module=module, token_label="legacy", pin_file=pin_file, softhsm_conf=conf)
    app = Appliance(make_settings(sqlite_url, hsm, tmp_path), clock=FakeClock())
    try:
        app.keystore.ensure_roots()
        schema.upgrade(app.db.engine)
        app.audit.ensure_genesis()
        with __import__("litestar.testing", fromlist=["TestClient"]).TestClient(create_app(app)) as client:
            headers = new_user(client, app, "legacy@example.com")
            vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=headers).json()["id"]
            item = client.post(
                f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "p"}, headers=headers
            ).json()["id"]
            _unbind(app)  # as schema 0002 left them
            with app.db.write() as db:
                db.query(Session).delete()
            first = adopt_once(app)
            assert first.done_now and first.public_keys == 1 and first.wrapped_keys == 1 and first.rows == 3
            headers = __import__("tests.support", fromlist=["login"]).login(client, "legacy@example.com")
            assert client.get(f"/api/v1/items/{item}", headers=headers).json()["password"] == "p"
            _unbind(app)
            second = adopt_once(app)
            assert not second.done_now and second.rows == 0
            assert client.get(f"/api/v1/items/{item}", headers=headers).status_code == 500
    finally:
        dismantle(app)
        if before is not None:
            os.environ["SOFTHSM2_CONF"] = before
