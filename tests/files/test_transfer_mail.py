"""Transfers with e-mail (a real SMTP server, aiosmtpd): links and per-recipient
codes mailed in separate messages, a code alone or with the password (both
needed: the key is split), the sender told of a lock and of each download."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from hsm.config import HsmConfig
from tests.conftest import dismantle
from tests.files.conftest import owner_with_vault
from tests.sends.conftest import Inbox, body, build_mail_app, mail_settings, smtp  # noqa: F401
from tests.support import FakeClock
from web.app import create_app

PASSWORD = "river stones at dusk 11"


@pytest.fixture
def mclient(sqlite_url: str, hsm_config: HsmConfig, tmp_path: Path, clock: FakeClock, smtp: Any) -> Iterator[Any]:  # noqa: F811
    app = build_mail_app(sqlite_url, hsm_config, tmp_path, clock, mail_settings(smtp[1]))
    try:
        with TestClient(create_app(app)) as c:
            yield c, app, smtp[0]
    finally:
        dismantle(app)


def _send(c: Any, headers: dict[str, str], **extra: Any) -> str:
    r = c.post("/api/v1/transfers", json={"recipients": ["buyer@supplier.example"], **extra}, headers=headers)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert (
        c.put(
            f"/api/v1/transfers/{tid}/files", params={"name": "a.txt"}, content=b"CONTENT", headers=headers
        ).status_code
        == 201
    )
    assert c.post(f"/api/v1/transfers/{tid}/send", headers=headers).status_code == 200
    return str(tid)


def _wait_for(c: Any, inbox: Inbox, to: str, subject: str) -> Any:
    for _ in range(50):
        found = [m for m in inbox.to(to) if subject in m["Subject"]]
        if found:
            return found[-1]
        c.app.state.mail_task.round()
    raise AssertionError(f"no message {subject!r} to {to}")


def _mailed(inbox: Inbox) -> tuple[str, str | None]:
    texts = [body(m) for m in inbox.to("buyer@supplier.example")]
    link = next(re.search(r"https://coffre\.example\.com/t/(\S+)", t).group(1) for t in texts if "/t/" in t)  # type: ignore[union-attr]
    codes = [m.group(0) for t in texts if (m := re.search(r"\b[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}\b", t))]
    for t in texts:  # the link and the code never travel in the same message
        assert not ("/t/" in t and codes and codes[0] in t)
    return link, codes[0] if codes else None


def test_codes_alone_and_with_a_password(mclient: Any) -> None:
    c, app, inbox = mclient
    headers, _ = owner_with_vault(c, app)
    _send(c, headers, email_codes=True)
    _wait_for(c, inbox, "buyer@supplier.example", "Your code")
    token, code = _mailed(inbox)
    assert code is not None
    unlock = f"/api/v1/public/transfers/{token}/unlock"
    assert c.post(unlock, json={"code": "AAAA-BBBB-CCCC"}).status_code == 404
    r = c.post(unlock, json={"code": code.lower().replace("-", "")})  # typed loosely: still the code
    assert r.status_code == 200, r.text
    got = c.get(
        f"/api/v1/public/transfers/{token}/files/{r.json()['files'][0]['id']}",
        params={"download_token": r.json()["download_token"]},
    )
    assert got.content == b"CONTENT"

    inbox.messages.clear()
    inbox.raw.clear()
    _send(c, headers, email_codes=True, password=PASSWORD)
    _wait_for(c, inbox, "buyer@supplier.example", "Your code")
    _wait_for(c, inbox, "buyer@supplier.example", "Files were sent")
    token, code = _mailed(inbox)
    unlock = f"/api/v1/public/transfers/{token}/unlock"
    assert c.post(unlock, json={"code": code}).status_code == 404  # the password is needed too
    assert c.post(unlock, json={"password": PASSWORD}).status_code == 404  # and the code
    assert c.post(unlock, json={"password": PASSWORD, "code": code}).status_code == 200


def test_the_sender_is_told_of_a_lock_and_of_downloads(mclient: Any) -> None:
    c, app, inbox = mclient
    headers, _ = owner_with_vault(c, app)
    _send(c, headers, password=PASSWORD, notify_downloads=True)
    _wait_for(c, inbox, "buyer@supplier.example", "Files were sent")
    token, code = _mailed(inbox)
    assert code is None
    r = c.post(f"/api/v1/public/transfers/{token}/unlock", json={"password": PASSWORD}).json()
    c.get(f"/api/v1/public/transfers/{token}/files/all", params={"download_token": r["download_token"]})
    receipt = body(_wait_for(c, inbox, "owner@example.com", "downloaded"))
    assert "buyer@supplier.example downloaded every file (zip)" in receipt
    for _ in range(5):
        c.post(f"/api/v1/public/transfers/{token}/unlock", json={"password": "wrong wrong wrong"})
    locked = _wait_for(c, inbox, "owner@example.com", "locked")
    assert "locked" in locked["Subject"] and "5 wrong" in body(locked)
    for message in inbox.raw:  # links and codes only, never the password or the content
        assert PASSWORD.encode() not in message and b"CONTENT" not in message


def test_the_owner_is_told_of_a_deposit(mclient: Any) -> None:
    c, app, inbox = mclient
    headers, vault_id = owner_with_vault(c, app)
    url = c.post("/api/v1/deposits", json={"vault_id": vault_id}, headers=headers).json()["url"]
    assert url.startswith("https://coffre.example.com/d/")  # links from [mail] base_url
    token = url.rsplit("/d/", 1)[1]
    r = c.put(f"/api/v1/public/deposits/{token}/files", params={"name": "secret-plan.pdf"}, content=b"DEPOSITED")
    assert r.status_code == 201
    told = body(_wait_for(c, inbox, "owner@example.com", "deposited"))
    assert "9 bytes" in told and f"/vaults/{vault_id}/files" in told and "secret-plan" not in told
