"""A real SMTP server (aiosmtpd) started by the tests, and appliances that mail through it."""

from __future__ import annotations

import dataclasses
import email
import time
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from litestar.testing import TestClient

from appliance.config import MailSettings
from appliance.core import Appliance
from hsm.config import HsmConfig
from tests.conftest import dismantle, make_settings
from tests.support import FakeClock, free_port
from web.app import create_app


class Inbox:
    """What the SMTP server received: parsed messages, and the raw bytes."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.content)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


def body(message: Message) -> str:
    part = message.get_body(("plain",)) if hasattr(message, "get_body") else None  # type: ignore[attr-defined]
    if part is None:
        for p in message.walk():
            if p.get_content_type() == "text/plain":
                part = p
                break
    assert part is not None
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mail_settings(port: int, **extra: Any) -> MailSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "coffre@example.com",
        "base_url": "https://coffre.example.com",
        "timeout_seconds": 2,
        "retry_seconds": 30,
        "max_attempts": 3,
    }
    values.update(extra)
    return MailSettings(**values)


def build_mail_app(
    database_url: str, hsm: HsmConfig, data_dir: Path, clock: FakeClock, mail: MailSettings | None
) -> Appliance:
    from appliance import schema

    settings = dataclasses.replace(make_settings(database_url, hsm, data_dir), mail=mail)
    app = Appliance(settings, clock=clock)
    schema.upgrade(app.db.engine)
    app.audit.ensure_genesis()
    return app


@pytest.fixture
def mail_app(
    database_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock, smtp: tuple[Inbox, int]
) -> Iterator[Appliance]:
    app = build_mail_app(database_url, hsm_config, tmp_path, clock, mail_settings(smtp[1]))
    try:
        yield app
    finally:
        dismantle(app)


@pytest.fixture
def mail_client(mail_app: Appliance) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(mail_app)) as test_client:
        yield test_client


def deliver(client: TestClient, inbox: Inbox, count: int, timeout: float = 10.0) -> None:  # type: ignore[type-arg]
    """Run the sender until ``count`` messages arrived (the server's own thread may win)."""
    task = client.app.state.mail_task
    deadline = time.monotonic() + timeout
    while len(inbox.messages) < count:
        task.round()
        if len(inbox.messages) >= count:
            break
        assert time.monotonic() < deadline, f"only {len(inbox.messages)} of {count} messages arrived"
        time.sleep(0.05)


def wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)
