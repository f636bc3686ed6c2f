"""Sends through the JSON API: the three modes end to end, limits, expiry, revocation,
the one 404 for every refusal, validation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from appliance.sends.models import Send
from tests.sends.support import SECRET, events, sqlite_only, token_of, vault_with_item
from tests.support import FakeClock, enroll, login, new_user

REVEAL = "/api/v1/public/sends/{}/reveal"


def _row(app: Any, send_id: str) -> Send:
    with app.db.read() as db:
        row = db.get(Send, send_id)
    assert row is not None
    return row


def _shredded(app: Any, send_id: str) -> None:
    row = _row(app, send_id)
    assert row.payload is None and row.wrapped_key is None and row.kek_label is None and row.wrapped_key_mac is None


def test_link_send_reveals_once_then_is_shredded(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    _, item = vault_with_item(client, alice)
    r = client.post("/api/v1/sends", json={"item_id": item, "mode": "link"}, headers=alice)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "url", "mailed"} and body["mailed"] is False
    token = token_of(body["url"])
    assert body["url"].endswith(f"/s/{token}") and token.startswith("cfx_") and len(token) >= 4 + 22
    assert _row(app, body["id"]).payload is not None
    r = client.post(REVEAL.format(token), json={})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "title": "Bank",
        "username": "ops",
        "password": SECRET,
        "url": "https://bank.example",
        "notes": "n",
    }
    again = client.post(REVEAL.format(token), json={})
    assert again.status_code == 404
    _shredded(app, body["id"])
    [sent] = client.get("/api/v1/sends", headers=alice).json()
    assert sent["status"] == "viewed" and sent["views_used"] == 1 and sent["viewed_at"]
    assert sent["viewed_from"] == "testclient"
    assert events(app) == ["send.created", "send.revealed"]


@sqlite_only
def test_view_limit_counts_down(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "link", "max_views": 3}, headers=alice)
    token, send_id = token_of(r.json()["url"]), r.json()["id"]
    for _ in range(3):
        r = client.post(REVEAL.format(token), json={})
        assert r.status_code == 200 and r.json()["password"] == SECRET and r.json()["title"] == "Secret"
    assert client.post(REVEAL.format(token), json={}).status_code == 404
    _shredded(app, send_id)


def test_code_send_wrong_codes_then_right(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    _, item = vault_with_item(client, alice)
    r = client.post("/api/v1/sends", json={"item_id": item, "mode": "code"}, headers=alice)
    assert r.status_code == 201, r.text
    body = r.json()
    code, token = body["code"], token_of(body["url"])
    assert code not in body["url"]
    assert client.post(REVEAL.format(token), json={}).status_code == 403  # no code: a wrong code
    for wrong in ("AAAA-AAAA-AAAA", "nonsense"):
        assert client.post(REVEAL.format(token), json={"code": wrong}).status_code == 403
    # Case, dashes and spaces do not matter.
    r = client.post(REVEAL.format(token), json={"code": code.lower().replace("-", " ")})
    assert r.status_code == 200, r.text
    assert r.json()["password"] == SECRET
    _shredded(app, body["id"])
    assert events(app).count("send.failed_code") == 3


def test_five_wrong_codes_destroy_the_send(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "code", "max_views": 2}, headers=alice)
    code, token, send_id = r.json()["code"], token_of(r.json()["url"]), r.json()["id"]
    for _ in range(5):
        assert client.post(REVEAL.format(token), json={"code": "ZZZZ-ZZZZ-ZZZZ"}).status_code == 403
    assert client.post(REVEAL.format(token), json={"code": code}).status_code == 404
    _shredded(app, send_id)
    row = _row(app, send_id)
    assert row.state == "destroyed" and row.failed_codes == 5
    assert client.get("/api/v1/sends", headers=alice).json()[0]["status"] == "destroyed"


def test_user_send_received_saved(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    _, item = vault_with_item(client, alice)
    r = client.post(
        "/api/v1/sends", json={"item_id": item, "mode": "user", "recipient_email": "Bob@Example.com"}, headers=alice
    )
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id", "mailed"}
    send_id = r.json()["id"]
    row = _row(app, send_id)
    assert row.wrapped_key is not None and row.wrapped_key_mac and row.kek_label is None and row.token_hash is None
    # The sender sees a status, never the copy; nobody else receives it.
    [sent] = client.get("/api/v1/sends", headers=alice).json()
    assert sent["status"] == "pending" and sent["recipient_email"] == "bob@example.com"
    assert client.get("/api/v1/received", headers=alice).json() == []
    [got] = client.get("/api/v1/received", headers=bob).json()
    assert got["id"] == send_id and got["sender_email"] == "alice@example.com"
    assert got["title"] == "Bank" and got["password"] == SECRET
    bob_vault = client.post("/api/v1/vaults", json={"name": "Mine"}, headers=bob).json()["id"]
    # Alice cannot save or discard what Bob received.
    save = f"/api/v1/received/{send_id}/save"
    assert client.post(save, json={"vault_id": bob_vault}, headers=alice).status_code == 404
    assert client.delete(f"/api/v1/received/{send_id}", headers=alice).status_code == 404
    alice_vault = client.get("/api/v1/vaults", headers=alice).json()[0]["id"]
    # Bob cannot save into a vault he is not a member of.
    r = client.post(f"/api/v1/received/{send_id}/save", json={"vault_id": alice_vault}, headers=bob)
    assert r.status_code == 404
    r = client.post(f"/api/v1/received/{send_id}/save", json={"vault_id": bob_vault}, headers=bob)
    assert r.status_code == 201, r.text
    saved = r.json()
    assert saved["vault_id"] == bob_vault and saved["password"] == SECRET and saved["title"] == "Bank"
    assert client.get(f"/api/v1/items/{saved['id']}", headers=bob).json()["password"] == SECRET
    assert client.get("/api/v1/received", headers=bob).json() == []
    _shredded(app, send_id)
    assert client.get("/api/v1/sends", headers=alice).json()[0]["status"] == "saved"
    assert client.post(save, json={"vault_id": bob_vault}, headers=bob).status_code == 404
    # The sender can no longer revoke (or change) it.
    assert client.delete(f"/api/v1/sends/{send_id}", headers=alice).status_code == 409


@sqlite_only
def test_user_send_discarded(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    r = client.post(
        "/api/v1/sends", json={"secret": SECRET, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice
    )
    send_id = r.json()["id"]
    assert client.delete(f"/api/v1/received/{send_id}", headers=bob).status_code == 204
    assert client.get("/api/v1/received", headers=bob).json() == []
    _shredded(app, send_id)
    assert client.delete(f"/api/v1/received/{send_id}", headers=bob).status_code == 404


def test_user_send_to_unknown_address_invites_and_delivers_after_enrollment(client: Any, app: Any) -> None:
    # Without [mail] only an administrator is handed the enrollment link (a plain user gets a
    # 409: tests/sends/test_review_fixes.py).
    alice = new_user(client, app, "alice@example.com", admin=True)
    r = client.post(
        "/api/v1/sends", json={"secret": SECRET, "mode": "user", "recipient_email": "carol@example.com"}, headers=alice
    )
    assert r.status_code == 201, r.text
    body = r.json()
    link = body["invitation_url"]
    assert "/enroll#token=cfe_" in link and body["mailed"] is False
    row = _row(app, body["id"])
    assert row.wrapped_key is None and row.kek_label and row.payload is not None  # waits under the KEK
    assert enroll(client, link.split("#token=", 1)[1]).status_code == 201
    carol = login(client, "carol@example.com")
    [got] = client.get("/api/v1/received", headers=carol).json()
    assert got["password"] == SECRET
    row = _row(app, body["id"])
    assert row.wrapped_key is not None and row.kek_label is None  # now wrapped to Carol's key
    assert "send.delivered" in events(app)


@sqlite_only
def test_a_send_cannot_invite_an_administrator_or_a_disabled_user(client: Any, app: Any) -> None:
    admin = new_user(client, app, "admin@example.com", admin=True)
    alice = new_user(client, app, "alice@example.com")
    bob = client.get("/api/v1/users", headers=admin).json()
    bob_id = next(u["id"] for u in bob if u["email"] == "alice@example.com")
    assert client.post(f"/api/v1/users/{bob_id}/disable", headers=admin).status_code == 200
    r = client.post(
        "/api/v1/sends", json={"secret": SECRET, "mode": "user", "recipient_email": "alice@example.com"}, headers=admin
    )
    assert r.status_code == 422
    assert alice  # alice's own session is gone with the disable


def test_expiry_via_the_clock_and_the_sweeper(client: Any, app: Any, clock: FakeClock) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "link"}, headers=alice)
    token, link_id = token_of(r.json()["url"]), r.json()["id"]
    r = client.post(
        "/api/v1/sends",
        json={"secret": SECRET, "mode": "user", "recipient_email": "bob@example.com", "expires_in_hours": 2},
        headers=alice,
    )
    user_id = r.json()["id"]
    clock.advance(2 * 3600 + 1)
    bob = login(client, "bob@example.com")  # sessions end after 30 idle minutes
    assert client.get("/api/v1/received", headers=bob).json() == []
    clock.advance(22 * 3600)  # past the default 24 h
    alice = login(client, "alice@example.com")
    assert client.post(REVEAL.format(token), json={}).status_code == 404
    statuses = {s["id"]: s["status"] for s in client.get("/api/v1/sends", headers=alice).json()}
    assert statuses == {link_id: "expired", user_id: "expired"}
    _shredded(app, link_id)  # the reveal that met it expired shredded it at once
    assert app.sends.sweep() == 1  # the user send: shredded by the sweep
    _shredded(app, link_id)
    _shredded(app, user_id)
    assert _row(app, link_id).state == "expired"
    assert events(app).count("send.expired") == 2
    assert app.sends.sweep() == 0


@sqlite_only
def test_revoked_send(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "code"}, headers=alice)
    token, code, send_id = token_of(r.json()["url"]), r.json()["code"], r.json()["id"]
    assert client.delete(f"/api/v1/sends/{send_id}", headers=bob).status_code == 404  # not Bob's
    assert client.delete(f"/api/v1/sends/{send_id}", headers=alice).status_code == 204
    assert client.delete(f"/api/v1/sends/{send_id}", headers=alice).status_code == 204  # idempotent
    assert client.post(REVEAL.format(token), json={"code": code}).status_code == 404
    _shredded(app, send_id)
    assert client.get("/api/v1/sends", headers=alice).json()[0]["status"] == "revoked"
    assert "send.revoked" in events(app)


@sqlite_only
def test_every_refusal_is_the_same_404(client: Any, app: Any, clock: FakeClock) -> None:
    alice = new_user(client, app, "alice@example.com")

    def link(**extra: Any) -> tuple[str, str]:
        r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "link", **extra}, headers=alice)
        return token_of(r.json()["url"]), r.json()["id"]

    used, _ = link()
    assert client.post(REVEAL.format(used), json={}).status_code == 200
    revoked, revoked_id = link()
    client.delete(f"/api/v1/sends/{revoked_id}", headers=alice)
    expired, _ = link(expires_in_hours=1)
    clock.advance(3601)
    unknown = "cfx_" + "A" * 43
    answers = [client.post(REVEAL.format(t), json={}) for t in (used, revoked, expired, unknown, "nonsense")]
    assert {r.status_code for r in answers} == {404}
    assert len({r.text for r in answers}) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "link"},
        {"mode": "link", "secret": "x", "item_id": "0" * 32},
        {"mode": "link", "secret": ""},
        {"mode": "link", "secret": "x", "expires_in_hours": 721},
        {"mode": "link", "secret": "x", "expires_in_hours": 0},
        {"mode": "link", "secret": "x", "max_views": 0},
        {"mode": "link", "secret": "x", "max_views": 11},
        {"mode": "user", "secret": "x"},
        {"mode": "user", "secret": "x", "recipient_email": "not-an-address"},
        {"mode": "user", "secret": "x", "recipient_email": "b@example.com", "max_views": 2},
    ],
)
def test_bad_sends_are_refused_and_change_nothing(sqlite_client: Any, sqlite_app: Any, body: dict[str, Any]) -> None:
    alice = new_user(sqlite_client, sqlite_app, "alice@example.com")
    r = sqlite_client.post("/api/v1/sends", json=body, headers=alice)
    assert r.status_code == 422, r.text
    assert sqlite_client.get("/api/v1/sends", headers=alice).json() == []
    assert sqlite_app.accounts.list_users(None)[-1].email == "alice@example.com"


def test_bad_shapes_are_400(sqlite_client: Any, sqlite_app: Any) -> None:
    alice = new_user(sqlite_client, sqlite_app, "alice@example.com")
    for body in ({"mode": "carrier-pigeon", "secret": "x"}, {"mode": "link", "secret": 3}, {"mode": "link", "x": 1}):
        assert sqlite_client.post("/api/v1/sends", json=body, headers=alice).status_code == 400
    assert sqlite_client.post(REVEAL.format("cfx_" + "A" * 43), json={"code": 5}).status_code == 400


@sqlite_only
def test_sending_an_item_needs_read_access(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    mallory = new_user(client, app, "mallory@example.com")
    _, item = vault_with_item(client, alice)
    r = client.post("/api/v1/sends", json={"item_id": item, "mode": "link"}, headers=mallory)
    assert r.status_code == 404
    with app.db.read() as db:
        assert db.execute(select(Send)).first() is None


def test_public_reveal_is_rate_limited(sqlite_client: Any, sqlite_app: Any) -> None:
    codes = [sqlite_client.post(REVEAL.format("cfx_" + "B" * 43), json={}).status_code for _ in range(31)]
    assert codes[:30] == [404] * 30 and codes[30] == 429


@sqlite_only
def test_opening_the_page_consumes_nothing(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "code"}, headers=alice)
    url, code, send_id = r.json()["url"], r.json()["code"], r.json()["id"]
    token = token_of(url)
    for _ in range(3):  # a link previewer, a mail scanner, the recipient
        page = client.get(f"/s/{token}")
        assert page.status_code == 200
        assert "Reveal" in page.text and 'name="code"' in page.text and SECRET not in page.text
        assert client.head(f"/s/{token}").status_code in (200, 405)
    row = _row(app, send_id)
    assert row.views_used == 0 and row.payload is not None and row.state == "pending"
    assert events(app).count("send.opened") == 3
    assert client.post(REVEAL.format(token), json={"code": code}).json()["password"] == SECRET
    gone = client.get(f"/s/{token}")
    assert gone.status_code == 404 and SECRET not in gone.text


@sqlite_only
def test_save_into_a_folder(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "Bob's"}, headers=bob).json()["id"]
    folder = client.post(f"/api/v1/vaults/{vault}/folders", json={"name": "Inbox"}, headers=bob).json()["id"]
    r = client.post(
        "/api/v1/sends", json={"secret": SECRET, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice
    )
    send_id = r.json()["id"]
    save = f"/api/v1/received/{send_id}/save"
    assert client.post(save, json={"vault_id": vault, "folder_id": "0" * 32}, headers=bob).status_code == 404
    r = client.post(save, json={"vault_id": vault, "folder_id": folder}, headers=bob)
    assert r.status_code == 201, r.text
    listed = client.get(f"/api/v1/vaults/{vault}/items?folder_id={folder}", headers=bob).json()
    assert [i["id"] for i in listed] == [r.json()["id"]]


@sqlite_only
def test_kek_rotation_finds_every_sealed_send_and_mail_body(client: Any, app: Any) -> None:
    """The KEK rotation job re-seals through keyops.registry: its context builder
    must open what the sends sealed (the outbox's: test_mail.py)."""
    from sqlalchemy import text

    from appliance.keyops.registry import SEALED

    alice = new_user(client, app, "alice@example.com", admin=True)  # an unknown address: admins only without [mail]
    for body in (
        {"secret": SECRET, "mode": "link"},
        {"secret": SECRET, "mode": "code"},
        {"secret": SECRET, "mode": "user", "recipient_email": "nobody-yet@example.com"},
    ):
        assert client.post("/api/v1/sends", json=body, headers=alice).status_code == 201
    [entry] = [e for e in SEALED if e.table == "sends"]
    cols = ", ".join(sorted({entry.id_column, entry.blob_column, *entry.reads}))
    with app.keystore.work() as work, app.db.read() as db:
        rows = db.execute(text(f"SELECT {cols} FROM sends WHERE kek_label IS NOT NULL")).mappings().all()
        for row in rows:
            work.unseal(row["payload"], entry.context(row))
    assert len(rows) == 3
