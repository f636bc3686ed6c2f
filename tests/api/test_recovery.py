"""M-of-N recovery end to end, 5 officers and threshold 3, on the real token: shares
picked up once; 2 shares are not enough (nothing changes), 3 recover; the user sets
a new PIN and reads every item they could read; wrong or duplicated shares refused;
the requester cannot approve; an expired request leaves nothing; no share, secret
or PIN in any file, in the database or in the logs. And recovery disabled."""

from __future__ import annotations

import logging

import shamir_mnemonic
from sqlalchemy import select, text

from appliance import audit
from appliance.models import (
    AuditEntry,
    Base,
    RecoveryEscrow,
    RecoveryPickup,
    RecoveryRequest,
    RecoveryRequestShare,
    User,
)
from tests.support import PIN, STRONG_PASSWORD, login, new_user

OFFICERS = [f"officer{i}@example.com" for i in range(1, 6)]
NEW_PIN = "730146"
NEW_PASSWORD = "a recovered passphrase for alice 58"


def _user(app, email) -> User:
    with app.db.read() as db:
        return db.execute(select(User).where(User.email == email)).scalar_one()


def _setup(client, app):
    heads = {e: new_user(client, app, e, admin=(e == OFFICERS[0])) for e in OFFICERS}
    admin = new_user(client, app, "admin@example.com", admin=True)
    alice = new_user(client, app, "alice@example.com")
    items = {}
    for name in ("ops", "finance"):
        vault = client.post("/api/v1/vaults", json={"name": name}, headers=alice).json()["id"]
        r = client.post(f"/api/v1/vaults/{vault}/items", json={"title": name, "password": f"pw-{name}"}, headers=alice)
        items[r.json()["id"]] = f"pw-{name}"
    return heads, admin, alice, items


def _events(app) -> list[str]:
    with app.db.read() as db:
        return [e for (e,) in db.execute(select(AuditEntry.event).order_by(AuditEntry.seq))]


def _reset(client, token, pin=NEW_PIN, password=NEW_PASSWORD):
    return client.post("/api/v1/auth/password-reset", json={"token": token, "new_password": password, "new_pin": pin})


def _dump(app) -> bytes:
    out = []
    with app.db.read() as db:
        for table in Base.metadata.sorted_tables:
            for row in db.execute(text(f"SELECT * FROM {table.name}")):  # our own table names
                out.append(repr(tuple(row)).encode())
    return b"\n".join(out)


def test_recovery_disabled_escrows_nothing_and_the_endpoints_say_so(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "alice@example.com")
    assert client.get("/api/v1/recovery", headers=admin).json() == {"enabled": False, "threshold": 0, "officers": []}
    r = client.post("/api/v1/recovery/requests", json={"email": "alice@example.com"}, headers=admin)
    assert r.status_code == 409 and "not enabled" in r.json()["detail"]
    assert client.post("/api/v1/recovery/my-share", headers=admin).status_code == 409
    assert client.get("/api/v1/recovery/requests", headers=admin).status_code == 409
    with app.db.read() as db:
        assert not db.execute(select(RecoveryEscrow)).all()


def test_five_officers_threshold_three_end_to_end(client, app, clock, caplog, tmp_path, token_dir):
    caplog.set_level(logging.DEBUG)
    heads, admin, alice, items = _setup(client, app)
    app.recovery.init(OFFICERS, 3)
    assert client.get("/api/v1/recovery", headers=alice).json() == {
        "enabled": True,
        "threshold": 3,
        "officers": OFFICERS,
    }
    # An officer who changes their PIN (a new key pair) before the pickup still gets their share.
    r = client.post("/api/v1/me/pin", json={"current_pin": PIN, "new_pin": "593017"}, headers=heads[OFFICERS[4]])
    assert r.status_code == 204, r.text
    shares = {}
    for email in OFFICERS:
        r = client.post("/api/v1/recovery/my-share", headers=heads[email])
        assert r.status_code == 200, r.text
        shares[email] = r.json()["share"]
        assert client.post("/api/v1/recovery/my-share", headers=heads[email]).status_code == 410  # once
    assert client.post("/api/v1/recovery/my-share", headers=admin).status_code == 403
    with app.db.read() as db:
        assert not db.execute(select(RecoveryPickup)).all()  # Coffre keeps none after pickup

    # alice enrolled before: escrowed at her next unlock, not before.
    r = client.post("/api/v1/recovery/requests", json={"email": "alice@example.com"}, headers=admin)
    assert r.status_code == 409 and "escrowed" in r.json()["detail"]
    login(client, "alice@example.com")
    status = app.recovery.status()
    assert (status.escrowed, status.users) == (2, 7)  # alice and officer5 (new pair); the others later

    # officer1 (an administrator) opens the request and then cannot approve it.
    r = client.post("/api/v1/recovery/requests", json={"email": "alice@example.com"}, headers=heads[OFFICERS[0]])
    assert r.status_code == 201, r.text
    request_id, token = r.json()["id"], r.json()["reset_token"]
    url = f"/api/v1/recovery/requests/{request_id}/shares"
    assert client.post(url, json={"share": shares[OFFICERS[0]]}, headers=heads[OFFICERS[0]]).status_code == 403
    assert client.post(url, json={"share": shares[OFFICERS[1]]}, headers=admin).status_code == 403  # not an officer

    # Wrong shares: malformed, and a valid SLIP-39 share of another secret.
    o2, o3, o4 = (heads[e] for e in OFFICERS[1:4])
    assert client.post(url, json={"share": "not a share at all"}, headers=o2).status_code == 422
    stranger = shamir_mnemonic.generate_mnemonics(1, [(3, 5)], b"\x01" * 32, b"", True, 0)[0][1]
    assert client.post(url, json={"share": stranger}, headers=o2).status_code == 422

    r = client.post(url, json={"share": shares[OFFICERS[1]]}, headers=o2)
    assert r.status_code == 202 and r.json() == {"shares_received": 1, "threshold": 3}
    assert client.post(url, json={"share": shares[OFFICERS[1]]}, headers=o2).status_code == 409  # twice
    assert client.post(url, json={"share": shares[OFFICERS[1]]}, headers=o3).status_code == 409  # duplicated share
    assert client.post(url, json={"share": shares[OFFICERS[2]]}, headers=o3).json()["shares_received"] == 2

    # Two shares are not enough: 409, and nothing changes.
    before = _user(app, "alice@example.com")
    r = _reset(client, token)
    assert r.status_code == 409 and "waiting for the officers" in r.json()["detail"]
    after = _user(app, "alice@example.com")
    assert (after.private_key_blob, after.password_hash, after.pin_salt) == (
        before.private_key_blob,
        before.password_hash,
        before.pin_salt,
    )
    listed = client.get("/api/v1/recovery/requests", headers=o4).json()
    assert [(x["email"], x["status"], x["shares_received"], x["threshold"]) for x in listed] == [
        ("alice@example.com", "open", 2, 3)
    ]

    assert client.post(url, json={"share": shares[OFFICERS[3]]}, headers=o4).json()["shares_received"] == 3
    r = _reset(client, token, pin="123123")
    assert r.status_code == 422  # the new PIN follows the policy
    r = _reset(client, token)
    assert r.status_code == 204, r.text

    # The new PIN opens the same key: every item reads; the old PIN does not.
    ticket = client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": NEW_PASSWORD})
    assert (
        client.post("/api/v1/auth/unlock", json={"login_ticket": ticket.json()["login_ticket"], "pin": PIN}).status_code
        == 401
    )
    fresh = login(client, "alice@example.com", password=NEW_PASSWORD, pin=NEW_PIN)
    for item_id, password in items.items():
        assert client.get(f"/api/v1/items/{item_id}", headers=fresh).json()["password"] == password
    assert _reset(client, token).status_code == 400  # the token is spent

    events = _events(app)
    for event in (
        "recovery.initialized",
        "recovery.share_picked_up",
        "recovery.requested",
        "recovery.share_submitted",
        "recovery.refused",
        "recovery.completed",
    ):
        assert event in events, event
    with app.keystore.work() as work, app.db.read() as db:
        assert audit.verify(db, work).ok
        assert not db.execute(select(RecoveryRequestShare)).all()
        done = db.get(RecoveryRequest, request_id)
        assert done.status == "completed" and done.private_blob is None and done.public_key is None

    # No share, no PIN, nowhere: files (database, token), the database dump, the logs.
    secrets = [s.encode() for s in shares.values()] + [NEW_PIN.encode(), PIN.encode()]
    secrets += [" ".join(s.split()[5:12]).encode() for s in shares.values()]  # any run of words
    for root in (tmp_path, token_dir):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(s in data for s in secrets), path
    dump = _dump(app)
    assert not any(s in dump for s in secrets)
    logs = caplog.text.encode()
    assert not any(s in logs for s in secrets)


def test_an_expired_request_leaves_nothing(client, app, clock):
    heads, _, _, _ = _setup(client, app)
    app.recovery.init(OFFICERS, 3)
    shares = {e: client.post("/api/v1/recovery/my-share", headers=heads[e]).json()["share"] for e in OFFICERS}
    login(client, "alice@example.com")  # escrow
    request_id, token = app.recovery_requests.open(None, "alice@example.com")
    url = f"/api/v1/recovery/requests/{request_id}/shares"
    for email in OFFICERS[1:3]:
        assert client.post(url, json={"share": shares[email]}, headers=heads[email]).status_code == 202
    clock.advance(24 * 3600 + 1)
    officer = login(client, OFFICERS[3])  # their session expired too
    r = client.post(url, json={"share": shares[OFFICERS[3]]}, headers=officer)
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert _reset(client, token).status_code in (400, 409)  # spent or expired token, or no open request
    with app.db.read() as db:
        row = db.get(RecoveryRequest, request_id)
        assert row.status == "expired" and row.private_blob is None and row.public_key is None
        assert not db.execute(select(RecoveryRequestShare)).all()
    assert "recovery.expired" in _events(app)
    login(client, "alice@example.com", password=STRONG_PASSWORD, pin=PIN)  # nothing changed for alice


def test_rotate_needs_m_shares_and_the_old_shares_then_open_nothing(client, app):
    heads, admin, _, items = _setup(client, app)
    app.recovery.init(OFFICERS, 3)
    old = {e: client.post("/api/v1/recovery/my-share", headers=heads[e]).json()["share"] for e in OFFICERS}
    login(client, "alice@example.com")  # escrow under version 1
    try:
        app.recovery_rotate([old[OFFICERS[0]], old[OFFICERS[1]]], None, None)
        raise AssertionError("two shares rotated")
    except Exception as exc:
        assert "3 different valid shares" in str(exc)
    leaver = _user(app, OFFICERS[0]).id
    r = client.delete(f"/api/v1/users/{leaver}", headers=admin)
    assert r.status_code == 409 and "recovery officer" in r.json()["detail"]
    status = app.recovery_rotate([old[e] for e in OFFICERS[:3]], OFFICERS[1:], 2)  # officer1 leaves
    assert (status.version, status.threshold, len(status.officers), status.escrowed) == (2, 2, 4, 1)
    new = {e: client.post("/api/v1/recovery/my-share", headers=heads[e]).json()["share"] for e in OFFICERS[1:]}
    assert client.post("/api/v1/recovery/my-share", headers=heads[OFFICERS[0]]).status_code == 403
    assert client.delete(f"/api/v1/users/{leaver}", headers=admin).status_code == 200  # now they can go
    request_id, token = app.recovery_requests.open(None, "alice@example.com")
    url = f"/api/v1/recovery/requests/{request_id}/shares"
    assert client.post(url, json={"share": old[OFFICERS[1]]}, headers=heads[OFFICERS[1]]).status_code == 422
    for email in OFFICERS[1:3]:
        assert client.post(url, json={"share": new[email]}, headers=heads[email]).status_code == 202
    assert _reset(client, token).status_code == 204
    fresh = login(client, "alice@example.com", password=NEW_PASSWORD, pin=NEW_PIN)
    for item_id, password in items.items():
        assert client.get(f"/api/v1/items/{item_id}", headers=fresh).json()["password"] == password


def test_recovery_is_the_way_back_from_the_twenty_pin_bound(client, app):
    heads, _, _, items = _setup(client, app)
    app.recovery.init(OFFICERS, 3)
    shares = {e: client.post("/api/v1/recovery/my-share", headers=heads[e]).json()["share"] for e in OFFICERS}
    login(client, "alice@example.com")  # escrow
    limit = app.settings.security.max_pin_failures_total
    alice_id = _user(app, "alice@example.com").id
    with app.keystore.work() as work, app.db.write() as db, app.accounts.change_user(db, work, alice_id) as row:
        row.locked, row.pin_failures_since_success = True, limit
    r = client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD})
    assert r.status_code == 423 and "recovery" in r.json()["detail"]
    request_id, token = app.recovery_requests.open(None, "alice@example.com")
    for email in OFFICERS[2:]:
        r = client.post(
            f"/api/v1/recovery/requests/{request_id}/shares", json={"share": shares[email]}, headers=heads[email]
        )
        assert r.status_code == 202
    assert _reset(client, token).status_code == 204
    fresh = login(client, "alice@example.com", password=NEW_PASSWORD, pin=NEW_PIN)
    for item_id, password in items.items():
        assert client.get(f"/api/v1/items/{item_id}", headers=fresh).json()["password"] == password
