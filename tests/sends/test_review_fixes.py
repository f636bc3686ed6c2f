"""Regression tests for the security review of sends and mail: each reproduces the
attack the review found (it failed before the fix)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from appliance.errors import Conflict
from appliance.mail import MailTask, outbox_state
from appliance.mail.models import MailMessage
from appliance.models import User
from appliance.sends.models import Send
from tests.sends.conftest import Inbox, body, deliver
from tests.sends.support import SECRET, events, sqlite_only
from tests.support import enroll, invite, login, new_user
from web.ui.session import SESSION_COOKIE, csrf_for_session

SENDS = "/api/v1/sends"
FORM = {"Sec-Fetch-Site": "same-origin", "Content-Type": "application/x-www-form-urlencoded"}


def _post_form(client: Any, headers: dict[str, str], path: str, fields: dict[str, str]) -> Any:
    """A UI form post as the browser makes it: the session cookie and its CSRF token."""
    from urllib.parse import urlencode

    session = headers["Authorization"].split()[1]
    content = urlencode({**fields, "_csrf": csrf_for_session(session)})
    return client.post(
        path, content=content, headers={**FORM, "Cookie": f"{SESSION_COOKIE}={session}"}, follow_redirects=False
    )


def _user(app: Any, email: str) -> User | None:
    with app.db.read() as db:
        return db.execute(select(User).where(User.email == email)).scalar_one_or_none()


# -- 1. a send never takes over an invitation, and never hands an enrollment link to a user ---


@sqlite_only
def test_a_send_to_an_invited_admin_leaves_the_invitation_alone(client: Any, app: Any) -> None:
    admin_token = invite(app, "boss@example.com", admin=True)  # pending admin invitation
    mallory = new_user(client, app, "mallory@example.com")
    r = client.post(
        SENDS, json={"secret": SECRET, "mode": "user", "recipient_email": "boss@example.com"}, headers=mallory
    )
    assert r.status_code == 201, r.text
    assert "invitation_url" not in r.json()
    boss = _user(app, "boss@example.com")
    assert boss is not None and boss.is_admin and boss.status == "invited"
    # The administrator's own enrollment token still works; the copy waits for them.
    assert enroll(client, admin_token).status_code == 201
    boss = _user(app, "boss@example.com")
    assert boss is not None and boss.is_admin and boss.status == "active"
    headers = login(client, "boss@example.com")
    [got] = client.get("/api/v1/received", headers=headers).json()
    assert got["password"] == SECRET and got["sender_email"] == "mallory@example.com"


@sqlite_only
def test_invite_by_send_refuses_an_existing_user(app: Any) -> None:
    invite(app, "pending@example.com")
    with pytest.raises(Conflict):
        app.accounts.invite("pending@example.com", False, None, by_send=True)


@sqlite_only
def test_a_user_send_to_an_unknown_address_without_mail_is_refused(client: Any, app: Any) -> None:
    mallory = new_user(client, app, "mallory@example.com")
    r = client.post(
        SENDS, json={"secret": SECRET, "mode": "user", "recipient_email": "carol@example.com"}, headers=mallory
    )
    assert r.status_code == 409, r.text
    assert "carol@example.com is not a user" in r.json()["detail"]
    assert "cfe_" not in r.text and "/enroll" not in r.text
    assert _user(app, "carol@example.com") is None  # no account was made
    with app.db.read() as db:
        assert db.execute(select(Send)).scalars().all() == []


@sqlite_only
def test_an_administrator_send_to_an_unknown_address_without_mail_gets_the_invitation(client: Any, app: Any) -> None:
    admin = new_user(client, app, "admin@example.com", admin=True)
    r = client.post(
        SENDS, json={"secret": SECRET, "mode": "user", "recipient_email": "carol@example.com"}, headers=admin
    )
    assert r.status_code == 201, r.text
    link = r.json()["invitation_url"]
    assert "/enroll#token=cfe_" in link
    carol = _user(app, "carol@example.com")
    assert carol is not None and not carol.is_admin
    assert enroll(client, link.split("#token=", 1)[1]).status_code == 201
    [got] = client.get("/api/v1/received", headers=login(client, "carol@example.com")).json()
    assert got["password"] == SECRET


@sqlite_only
def test_a_user_send_to_an_unknown_address_with_mail_invites_by_mail_only(
    mail_client: TestClient,  # type: ignore[type-arg]
    mail_app: Any,
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    client, app = mail_client, mail_app
    mallory = new_user(client, app, "mallory@example.com")
    deliver(client, inbox, 1)  # Mallory's own invitation
    r = client.post(
        SENDS, json={"secret": SECRET, "mode": "user", "recipient_email": "carol@example.com"}, headers=mallory
    )
    assert r.status_code == 201, r.text
    assert "invitation_url" not in r.json() and r.json()["mailed"] is True
    assert "cfe_" not in r.text and "/enroll" not in r.text
    deliver(client, inbox, 2)
    [message] = inbox.to("carol@example.com")
    assert message["Subject"] == "You are invited to Coffre"
    text = body(message)
    assert "mallory@example.com sent you a password" in text
    token = text.split("/enroll#token=", 1)[1].split()[0]
    carol = _user(app, "carol@example.com")
    assert carol is not None and not carol.is_admin
    assert enroll(client, token).status_code == 201
    [got] = client.get("/api/v1/received", headers=login(client, "carol@example.com")).json()
    assert got["password"] == SECRET
    assert "send.delivered" in events(app)


# -- 2. a database writer cannot reroute a queued message ------------------------------------


@sqlite_only
@pytest.mark.parametrize(("column", "value"), [("to_address", "mallory@evil.example"), ("template", "send_received")])
def test_a_rerouted_outbox_message_is_failed_not_sent(
    mail_app: Any, smtp: tuple[Inbox, int], column: str, value: str
) -> None:
    inbox, _ = smtp
    _, token = mail_app.accounts.invite("victim@example.com", False)  # the mail holds the enrollment link
    with mail_app.db.write() as db:
        row = db.execute(select(MailMessage)).scalar_one()
        setattr(row, column, value)
    MailTask(mail_app).round()  # no web server here: this is the only sender
    assert inbox.messages == [] and not any(token.encode() in raw for raw in inbox.raw)
    with mail_app.db.read() as db:
        row = db.execute(select(MailMessage)).scalar_one()
    assert row.state == "failed" and row.body_blob is None and row.kek_label is None
    assert row.last_error and "integrity" in row.last_error
    assert "integrity.failed" in events(mail_app, "integrity.")
    state = outbox_state(mail_app)
    assert state.failed == 1 and state.pending == 0 and state.last_error == row.last_error
    # Nothing left to retry.
    MailTask(mail_app).round()
    assert inbox.messages == []


@sqlite_only
def test_an_untouched_message_still_goes_out(mail_app: Any, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    _, token = mail_app.accounts.invite("victim@example.com", False)
    assert MailTask(mail_app).round() == 1
    [message] = inbox.to("victim@example.com")
    assert token in body(message)


# -- 3. the send form's numbers --------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1234567", "-1", "1.5"])
def test_the_send_form_refuses_odd_digits_with_a_4xx(client: Any, app: Any, value: str) -> None:
    """ "²" and "٣" pass str.isdigit() but int() refuses them: a 500 before the fix."""
    alice = new_user(client, app, "alice@example.com")
    for field in ("expires_in_hours", "max_views"):
        r = _post_form(client, alice, "/sends", {"mode": "link", "secret": SECRET, field: value})
        assert 400 <= r.status_code < 500, (field, r.status_code)
        assert "whole numbers" in r.text
    with app.db.read() as db:
        assert db.execute(select(Send)).scalars().all() == []
    ok = _post_form(client, alice, "/sends", {"mode": "link", "secret": SECRET, "expires_in_hours": "2"})
    assert ok.status_code == 200 and "/s/cfx_" in ok.text


@sqlite_only
def test_the_send_form_explains_the_unknown_address_refusal(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = _post_form(client, alice, "/sends", {"mode": "user", "secret": SECRET, "recipient_email": "carol@example.com"})
    assert r.status_code == 409
    assert "carol@example.com is not a user. Ask an administrator to invite them" in r.text
    # The form says so beforehand: without [mail] only an administrator's send invites.
    page = client.get("/sends/new", headers={"Cookie": f"{SESSION_COOKIE}={alice['Authorization'].split()[1]}"}).text
    assert "(they need an account)" in page and "someone without an account is invited" not in page
    admin = new_user(client, app, "admin@example.com", admin=True)
    page = client.get("/sends/new", headers={"Cookie": f"{SESSION_COOKIE}={admin['Authorization'].split()[1]}"}).text
    assert "someone without an account is invited" in page


# -- 4. reading a received password is audited; sends are rate-limited per sender ------------


def _audit(app: Any, event: str) -> list[tuple[str | None, str | None]]:
    from appliance.models import AuditEntry

    with app.db.read() as db:
        rows = db.execute(
            select(AuditEntry.actor, AuditEntry.target).where(AuditEntry.event == event).order_by(AuditEntry.seq)
        ).all()
    return [(a, t) for a, t in rows]


@sqlite_only
def test_reading_received_passwords_is_audited_per_copy(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    ids = []
    for _ in range(2):
        r = client.post(
            SENDS, json={"secret": SECRET, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice
        )
        ids.append(r.json()["id"])
    bob_id = _user(app, "bob@example.com").id  # type: ignore[union-attr]
    assert _audit(app, "send.read") == []
    assert len(client.get("/api/v1/received", headers=bob).json()) == 2
    read = _audit(app, "send.read")
    assert sorted(read) == sorted((bob_id, i) for i in ids)  # one entry per copy opened
    # Saving opens the copy again: read, then saved.
    vault = client.post("/api/v1/vaults", json={"name": "Mine"}, headers=bob).json()["id"]
    r = client.post(f"/api/v1/received/{ids[0]}/save", json={"vault_id": vault}, headers=bob)
    assert r.status_code == 201, r.text
    assert _audit(app, "send.read")[-1] == (bob_id, ids[0])
    assert len(_audit(app, "send.read")) == 3
    # An empty list reads nothing.
    assert client.delete(f"/api/v1/received/{ids[1]}", headers=bob).status_code == 204
    assert client.get("/api/v1/received", headers=bob).json() == []
    assert len(_audit(app, "send.read")) == 3


def test_sends_are_rate_limited_per_sender(client: Any, app: Any) -> None:
    limit = app.settings.sends.creates_per_10_minutes
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    for _ in range(limit):
        assert client.post(SENDS, json={"secret": SECRET, "mode": "link"}, headers=alice).status_code == 201
    r = client.post(SENDS, json={"secret": SECRET, "mode": "link"}, headers=alice)
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) > 0
    r = client.post(SENDS, json={"secret": SECRET, "mode": "user", "recipient_email": "bob@example.com"}, headers=alice)
    assert r.status_code == 429
    with app.db.read() as db:
        assert len(db.execute(select(Send)).scalars().all()) == limit  # the refused ones made nothing
    # Per sender: Bob is not held back by Alice.
    assert client.post(SENDS, json={"secret": SECRET, "mode": "link"}, headers=bob).status_code == 201
    # Bad input is refused as such and does not count.
    assert client.post(SENDS, json={"secret": "", "mode": "link"}, headers=bob).status_code == 422


@sqlite_only
def test_the_send_rate_limit_window_slides(client: Any, app: Any, clock: Any) -> None:
    limit = app.settings.sends.creates_per_10_minutes
    alice = new_user(client, app, "alice@example.com")
    for _ in range(limit):
        assert client.post(SENDS, json={"secret": SECRET, "mode": "code"}, headers=alice).status_code == 201
    assert client.post(SENDS, json={"secret": SECRET, "mode": "code"}, headers=alice).status_code == 429
    clock.advance(601)
    alice = login(client, "alice@example.com")  # sessions end after 30 idle minutes; 10 are fine but be safe
    assert client.post(SENDS, json={"secret": SECRET, "mode": "code"}, headers=alice).status_code == 201


# -- 5. the reveal checks the row before it trusts code_kdf; a swapped payload is no wrong code --

REVEAL = "/api/v1/public/sends/{}/reveal"


def _code_send(client: Any, headers: dict[str, str]) -> tuple[str, str, str]:
    r = client.post(SENDS, json={"secret": SECRET, "mode": "code"}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["url"].rsplit("/s/", 1)[1], r.json()["code"]


@sqlite_only
@pytest.mark.parametrize(
    "kdf",
    [
        "argon2id$t=1$m=1024",  # no p: a KeyError (500) before the fix
        "argon2id$t=1$m=lots$p=1",  # a ValueError (500)
        "argon2id$t=1$m=99999999999999$p=1",  # beyond what Argon2 takes (500)
        "nonsense",
    ],
)
def test_a_tampered_code_kdf_is_a_404_and_audited(client: Any, app: Any, kdf: str) -> None:
    alice = new_user(client, app, "alice@example.com")
    send_id, token, code = _code_send(client, alice)
    with app.db.write() as db:
        db.get(Send, send_id).code_kdf = kdf
    r = client.post(REVEAL.format(token), json={"code": code})
    assert r.status_code == 404, r.text
    assert "integrity.failed" in events(app, "integrity.")
    with app.db.read() as db:
        row = db.get(Send, send_id)
    assert row.failed_codes == 0 and row.payload is not None and row.state == "pending"


@sqlite_only
def test_a_huge_code_kdf_is_refused_before_argon2_runs(client: Any, app: Any) -> None:
    """m = 4 GiB, t = a million: refused by the row MAC (and by the bound) before Argon2id."""
    alice = new_user(client, app, "alice@example.com")
    send_id, token, code = _code_send(client, alice)
    with app.db.write() as db:
        db.get(Send, send_id).code_kdf = "argon2id$t=1000000$m=4194304$p=1"
    r = client.post(REVEAL.format(token), json={"code": code})
    assert r.status_code == 404
    assert "integrity.failed" in events(app, "integrity.")


def test_code_kdf_parameters_are_bounded_by_the_configuration() -> None:
    from appliance.config import CryptoSettings
    from appliance.sends.crypto import kdf_params

    configured = CryptoSettings(argon2_time_cost=2, argon2_memory_kib=1024, argon2_parallelism=1)
    ok = kdf_params("argon2id$t=2$m=1024$p=1", configured)
    assert ok is not None and (ok.argon2_time_cost, ok.argon2_memory_kib, ok.argon2_parallelism) == (2, 1024, 1)
    # Up to the built-in defaults too (an administrator who lowered the cost keeps older sends).
    assert kdf_params("argon2id$t=3$m=65536$p=1", configured) is not None
    for bad in (
        "argon2id$t=4$m=1024$p=1",
        "argon2id$t=1$m=4194304$p=1",
        "argon2id$t=1$m=1024$p=64",
        "argon2id$t=0$m=1024$p=1",
        "argon2id$t=1$m=4$p=1",
        "argon2i$t=1$m=1024$p=1",
        "argon2id$t=1$m=1024$p=1$x=2",
        "argon2id$t=\u0661$m=1024$p=1",
        "",
        None,
    ):
        assert kdf_params(bad, configured) is None, bad


@sqlite_only
def test_a_swapped_payload_is_an_integrity_failure_not_a_wrong_code(client: Any, app: Any) -> None:
    alice = new_user(client, app, "alice@example.com")
    a_id, a_token, a_code = _code_send(client, alice)
    b_id, _, _ = _code_send(client, alice)
    with app.db.write() as db:
        db.get(Send, a_id).payload = db.get(Send, b_id).payload  # the row MAC covers only "has a copy"
    for _ in range(app.settings.sends.max_code_failures):
        r = client.post(REVEAL.format(a_token), json={"code": a_code})
        assert r.status_code == 404, r.text  # not "the code is wrong" (403)
    with app.db.read() as db:
        row = db.get(Send, a_id)
    assert row.failed_codes == 0 and row.state == "pending"  # the right code never counted
    assert "send.failed_code" not in events(app)
    assert "integrity.failed" in events(app, "integrity.")


# -- 6. an expired send is shredded by the reveal (or page) that meets it ---------------------


@pytest.mark.parametrize("how", ["reveal", "page"])
def test_the_public_path_shreds_an_expired_send_at_once(client: Any, app: Any, clock: Any, how: str) -> None:
    alice = new_user(client, app, "alice@example.com")
    r = client.post(SENDS, json={"secret": SECRET, "mode": "link", "expires_in_hours": 1}, headers=alice)
    send_id, token = r.json()["id"], r.json()["url"].rsplit("/s/", 1)[1]
    clock.advance(3601)
    if how == "reveal":
        assert client.post(REVEAL.format(token), json={}).status_code == 404
    else:
        assert client.get(f"/s/{token}").status_code == 404
    with app.db.read() as db:
        row = db.get(Send, send_id)
    assert row.state == "expired" and row.finished_at is not None
    assert row.payload is None and row.kek_label is None and row.wrapped_key is None
    assert events(app).count("send.expired") == 1
    assert app.sends.sweep() == 0  # nothing left for the sweeper
    # Its row still verifies (re-MACed after the shred): the sender sees "expired".
    alice = login(client, "alice@example.com")
    assert client.get(SENDS, headers=alice).json()[0]["status"] == "expired"
    assert "integrity.failed" not in events(app, "integrity.")
