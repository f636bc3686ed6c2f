"""E-mail through a real SMTP server (aiosmtpd): invitations, the outbox's
transactions, retries, a dead server, and what administrators see."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from appliance.config import ConfigError, from_mapping
from appliance.errors import Conflict
from appliance.mail.models import MailMessage
from appliance.status import collect, report
from hsm.config import HsmConfig
from tests.conftest import dismantle
from tests.sends.conftest import Inbox, body, build_mail_app, deliver, mail_settings
from tests.sends.support import sqlite_only
from tests.support import FakeClock, free_port, new_user
from web.app import create_app
from web.observability import scrape


def test_invitation_is_mailed_with_its_link(mail_client: TestClient, smtp: tuple[Inbox, int]) -> None:  # type: ignore[type-arg]
    inbox, _ = smtp
    app = mail_client.app.state.appliance
    admin = new_user(mail_client, app, "admin@example.com", admin=True)
    inbox.messages.clear()
    r = mail_client.post("/api/v1/users", json={"email": "new@example.com"}, headers=admin)
    assert r.status_code == 201, r.text
    token = r.json()["enrollment_token"]
    deliver(mail_client, inbox, 1)
    [message] = inbox.to("new@example.com")
    assert message["From"] == "coffre@example.com"
    assert message["Subject"] == "You are invited to Coffre"
    assert f"https://coffre.example.com/enroll#token={token}" in body(message)
    # Sent: the body is erased from the outbox, only the envelope stays.
    with app.db.read() as db:
        row = db.execute(select(MailMessage).where(MailMessage.to_address == "new@example.com")).scalar_one()
    assert row.state == "sent" and row.body_blob is None and row.kek_label is None


def test_a_rolled_back_request_sends_nothing(mail_client: TestClient, smtp: tuple[Inbox, int]) -> None:  # type: ignore[type-arg]
    inbox, _ = smtp
    app = mail_client.app.state.appliance
    new_user(mail_client, app, "someone@example.com")
    deliver(mail_client, inbox, 1)  # their invitation
    # Re-inviting an enrolled user fails inside the transaction that would have queued the mail.
    with pytest.raises(Conflict):
        app.accounts.invite("someone@example.com", False)
    with app.db.read() as db:
        pending = db.execute(select(MailMessage).where(MailMessage.state == "pending")).scalars().all()
    assert pending == []
    mail_client.app.state.mail_task.round()
    assert len(inbox.messages) == 1


@sqlite_only
def test_the_outbox_body_is_sealed(mail_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, token = mail_app.accounts.invite("sealed@example.com", False)
    with mail_app.db.read() as db:
        row = db.execute(select(MailMessage)).scalar_one()
    assert row.body_blob is not None and token.encode() not in row.body_blob
    assert row.kek_label and row.kek_label.startswith("coffre-kek-")
    # The KEK rotation job finds it and opens it with the same associated data.
    from appliance.keyops.registry import SEALED

    [entry] = [e for e in SEALED if e.table == "mail_outbox"]
    with mail_app.keystore.work() as work:
        assert token.encode() in work.unseal(
            row.body_blob, entry.context({"id": row.id, "to_address": row.to_address, "template": row.template})
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dead_smtp_server_neither_fails_nor_slows_the_request(
    database_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock
) -> None:
    dead_port = free_port()  # nothing listens there
    app = build_mail_app(database_url, hsm_config, tmp_path, clock, mail_settings(dead_port, max_attempts=2))
    try:
        with TestClient(create_app(app)) as client:
            admin = new_user(client, app, "admin@example.com", admin=True)
            started = time.monotonic()
            r = client.post("/api/v1/users", json={"email": "x@example.com"}, headers=admin)
            elapsed = time.monotonic() - started
            assert r.status_code == 201, r.text
            assert elapsed < 1.0, elapsed
            task = client.app.state.mail_task
            task.stop()  # rounds by hand only, so that the attempts below are counted exactly
            task.round()
            with app.db.read() as db:
                row = db.execute(select(MailMessage).where(MailMessage.to_address == "x@example.com")).scalar_one()
            assert row.state == "pending" and row.attempts >= 1 and row.last_error
            assert row.next_attempt_at > clock.now  # backed off
            lines = "\n".join(collect(app))
            assert "mail error:    ConnectionRefusedError" in lines, lines
            clock.advance(3600)
            task.round()
            with app.db.read() as db:
                row = db.execute(select(MailMessage).where(MailMessage.to_address == "x@example.com")).scalar_one()
            assert row.state == "failed" and row.body_blob is None
            mail = report(app)["mail"]
            assert mail["failed"] >= 1 and "ConnectionRefused" in mail["last_error"]
            metrics = scrape(app, client.app.state.pool_watch).decode()
            assert re.search(r"^coffre_mail_failed [1-9]", metrics, re.M), metrics
    finally:
        dismantle(app)


@sqlite_only
def test_retry_after_the_server_comes_back(mail_client: TestClient, smtp: tuple[Inbox, int], clock: FakeClock) -> None:  # type: ignore[type-arg]
    inbox, _ = smtp
    app = mail_client.app.state.appliance
    # The sender first meets a closed port, then the real server after the back-off.
    task = mail_client.app.state.mail_task
    task.stop()  # rounds by hand only: the server's own thread would race the swap below
    app.accounts.invite("later@example.com", False)
    good = app.settings.mail
    object.__setattr__(app.settings, "mail", mail_settings(free_port()))
    try:
        task.round()
    finally:
        object.__setattr__(app.settings, "mail", good)
    assert inbox.to("later@example.com") == []
    clock.advance(31)
    deliver(mail_client, inbox, 1)
    assert len(inbox.to("later@example.com")) == 1


def test_mail_config_is_checked() -> None:
    base = {"hsm": {"module": "m", "token_label": "t"}, "database": {"url": "sqlite:///x"}}
    ok = from_mapping(
        {
            **base,
            "mail": {"host": "smtp.example.com", "from_address": "c@example.com", "base_url": "https://c.example.com"},
        }
    )
    assert ok.mail is not None and ok.mail.security == "starttls" and ok.mail.port == 587
    assert from_mapping(base).mail is None
    for bad in (
        {"host": "smtp.example.com", "from_address": "c@example.com"},
        {"host": "smtp.example.com", "from_address": "c@example.com", "base_url": "https://c", "security": "ssl"},
        {"host": "smtp.example.com", "from_address": "c@example.com", "base_url": "https://c", "security": "none"},
        {"host": "smtp.example.com", "from_address": "nobody", "base_url": "https://c"},
        {"host": "smtp.example.com", "from_address": "c@example.com", "base_url": "https://c", "password_file": "/p"},
    ):
        with pytest.raises(ConfigError):
            from_mapping({**base, "mail": bad})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_account_locked_is_mailed(mail_client: TestClient, smtp: tuple[Inbox, int]) -> None:  # type: ignore[type-arg]
    inbox, _ = smtp
    app = mail_client.app.state.appliance
    new_user(mail_client, app, "careless@example.com")
    deliver(mail_client, inbox, 1)
    for _ in range(app.settings.security.max_pin_failures):
        ticket = mail_client.post(
            "/api/v1/auth/login", json={"email": "careless@example.com", "password": "correct horse battery staple 42"}
        ).json()["login_ticket"]
        mail_client.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": "111111"})
    deliver(mail_client, inbox, 2)
    locked = inbox.to("careless@example.com")[-1]
    assert locked["Subject"] == "Your Coffre account is locked"
    assert "wrong PINs" in body(locked) and "111111" not in body(locked)
