"""Sends under attack: parallel reveals, a database writer, and where secrets must
never appear (database dump, logs, e-mails)."""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import pytest
from sqlalchemy import update

from appliance.errors import NotFound
from appliance.models import User
from appliance.sends.models import Send
from tests.sends.conftest import Inbox, body, deliver
from tests.sends.support import SECRET, dump, events, sqlite_only, token_of, vault_with_item
from tests.support import FakeClock, new_user
from web.server import redact_send_tokens

REVEAL = "/api/v1/public/sends/{}/reveal"


def _race(app: Any, token: str, code: str | None, n: int = 2) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = app.sends.reveal(token, code, f"10.0.0.{i}")
        except NotFound as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("mode", ["link", "code"])
def test_parallel_reveals_of_a_one_view_send_exactly_one_wins(client: Any, app: Any, mode: str) -> None:
    alice = new_user(client, app, "alice@example.com")
    for _ in range(3):
        r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": mode}, headers=alice)
        token, code = token_of(r.json()["url"]), r.json().get("code")
        results = _race(app, token, code, n=3)
        won = [x for x in results if not isinstance(x, NotFound)]
        assert len(won) == 1, results
        assert won[0].password == SECRET
        assert sum(isinstance(x, NotFound) for x in results) == 2
    assert events(app).count("send.revealed") == 3


# -- a database writer without the token ---------------------------------------------


def _write(app: Any, send_id: str, **values: Any) -> None:
    with app.db.write() as db:
        db.execute(update(Send).where(Send.id == send_id).values(**values))


def test_db_writer_cannot_point_a_link_at_their_own_token(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "link"}, headers=alice)
    send_id = r.json()["id"]
    theirs = "cfx_" + "M" * 43
    _write(app, send_id, token_hash=hashlib.sha256(theirs.encode()).hexdigest())
    assert client.post(REVEAL.format(theirs), json={}).status_code == 404
    assert client.get(f"/s/{theirs}").status_code == 404
    assert "integrity.failed" in events(app, "integrity.")


@pytest.mark.parametrize(
    "change",
    [
        {"max_views": 5},
        {"views_used": 0},  # after one of two views
        {"expires_at": 4_000_000_000.0},
        {"failed_codes": 0},
        {"state": "pending"},
    ],
)
@sqlite_only
def test_db_writer_cannot_raise_a_sends_limits(client: Any, app: Any, clock: FakeClock, change: dict[str, Any]) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = client.post(
        "/api/v1/sends", json={"secret": SECRET, "mode": "code", "max_views": 2, "expires_in_hours": 1}, headers=alice
    )
    token, code, send_id = token_of(r.json()["url"]), r.json()["code"], r.json()["id"]
    assert client.post(REVEAL.format(token), json={"code": "AAAA-AAAA-AAAA"}).status_code == 403
    assert client.post(REVEAL.format(token), json={"code": code}).status_code == 200
    if "expires_at" in change:
        clock.advance(3601)
    if change.get("state") == "pending":
        client.delete(f"/api/v1/sends/{send_id}", headers=alice)
        with app.db.read() as db:
            assert db.get(Send, send_id).payload is None
        return  # nothing left to open: revocation shredded it
    _write(app, send_id, **change)
    assert client.post(REVEAL.format(token), json={"code": code}).status_code == 404


def test_db_writer_cannot_redirect_a_user_send(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    mallory = new_user(client, app, "mallory@example.com")
    _, item = vault_with_item(client, alice)
    r = client.post(
        "/api/v1/sends", json={"item_id": item, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice
    )
    send_id = r.json()["id"]
    with app.db.read() as db:
        mallory_id = db.query(User).filter(User.email == "mallory@example.com").one().id
    _write(app, send_id, recipient_id=mallory_id)
    assert client.get("/api/v1/received", headers=mallory).json() == []
    assert client.get("/api/v1/received", headers=bob).json() == []
    assert "integrity.failed" in events(app, "integrity.")


@sqlite_only
def test_db_writer_cannot_plant_a_send(client: Any, app: Any) -> None:
    """A copy of Bob's send row re-addressed (new id, same wrapped key) opens nothing."""
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    r = client.post(
        "/api/v1/sends", json={"secret": SECRET, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice
    )
    send_id = r.json()["id"]
    with app.db.write() as db:
        row = db.get(Send, send_id)
        clone = Send(**{c.name: getattr(row, c.name) for c in Send.__table__.columns})
        clone.id = "f" * 32
        db.add(clone)
    got = client.get("/api/v1/received", headers=bob).json()
    assert [g["id"] for g in got] == [send_id]


# -- secrets absent from the database, logs and e-mails --------------------------------


def test_no_secret_in_dump_logs_or_mails(
    mail_client: Any, mail_app: Any, smtp: tuple[Inbox, int], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    inbox, _ = smtp
    client, app = mail_client, mail_app
    alice = new_user(client, app, "alice@example.com")
    new_user(client, app, "bob@example.com")
    deliver(client, inbox, 2)  # the two invitations
    _, item = vault_with_item(client, alice)
    # By code, to someone without an account: they get the link, never the code.
    r = client.post(
        "/api/v1/sends",
        json={"item_id": item, "mode": "code", "recipient_email": "outsider@example.org"},
        headers=alice,
    )
    assert r.status_code == 201 and r.json()["mailed"] is True
    code, url = r.json()["code"], r.json()["url"]
    token = token_of(url)
    assert url == f"https://coffre.example.com/s/{token}"
    # To a user: "you received a password".
    r = client.post(
        "/api/v1/sends", json={"item_id": item, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice
    )
    assert r.json()["mailed"] is True
    # By link with an expiry: it will expire unseen.
    r = client.post("/api/v1/sends", json={"secret": SECRET, "mode": "link", "expires_in_hours": 1}, headers=alice)
    link_token = token_of(r.json()["url"])
    deliver(client, inbox, 4)
    [link_mail] = inbox.to("outsider@example.org")
    text = body(link_mail)
    assert url in text and code not in text and code.replace("-", "") not in text
    [received] = inbox.to("bob@example.com")[1:]
    assert received["Subject"] == "You received a password on Coffre"
    assert "alice@example.com" in body(received) and "https://coffre.example.com/received" in body(received)
    # The outsider reveals: a receipt goes to the sender.
    assert client.get(f"/s/{token}").status_code == 200
    r = client.post(REVEAL.format(token), json={"code": code})
    assert r.status_code == 200 and r.json()["password"] == SECRET
    deliver(client, inbox, 5)
    receipt = inbox.to("alice@example.com")[-1]
    assert receipt["Subject"] == "Your sent password was opened"
    assert "testclient" in body(receipt) and "destroyed" in body(receipt)
    # Expiry: a receipt too.
    clock.advance(3601)
    app.sends.sweep()
    deliver(client, inbox, 6)
    expired = inbox.to("alice@example.com")[-1]
    assert expired["Subject"] == "Your sent password expired" and "without being opened" in body(expired)
    # Nowhere: the secret, the code; the tokens are in no row and no log line.
    everything = dump(app)
    # The server side's log lines (not the test's SMTP server or HTTP client, which log what they carry).
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("mail.log", "httpx", "httpcore"))
    )
    for needle in (SECRET, code, code.replace("-", ""), token, link_token):
        assert needle.encode() not in everything, needle
        assert needle not in logged, needle
    for raw in inbox.raw:
        assert SECRET.encode() not in raw and code.encode() not in raw and code.replace("-", "").encode() not in raw


def test_uvicorn_access_lines_do_not_carry_send_tokens() -> None:
    token = "cfx_" + "Q" * 43
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "x",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", f"/s/{token}", "1.1", 200),
        None,
    )
    assert redact_send_tokens(record)
    assert token not in record.getMessage() and "/s/cfx_[redacted]" in record.getMessage()
