"""`coffre serve --invite-admin EMAIL` (what `make run` does) prints the enrollment
token after the server's start-up lines, with its expiry and the next step; the
token works; once an administrator has enrolled, no token is issued any more."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.support import COFFRE, PIN, STRONG_PASSWORD, free_port, init_data_dir


def _serve_until_banner(config: Path, email: str, timeout: float = 90) -> tuple[str, int]:
    port = free_port()
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    proc = subprocess.Popen(
        [COFFRE, "serve", "--host", "127.0.0.1", "--port", str(port), "--invite-admin", email],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    out = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and out.count(b"=" * 78) < 2:
            if sel.select(timeout=1):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        proc.stdout.close()
    return out.decode(), port


def test_the_token_comes_last_after_start_up_with_its_expiry_and_next_step(tmp_path):
    config = init_data_dir(tmp_path / "data")
    text, port = _serve_until_banner(config, "first@example.com")
    assert text.count("=" * 78) == 2, text
    banner = text[text.index("=" * 78) :]
    before = text[: text.index("=" * 78)]
    assert "Uvicorn running on" in before and "Application startup complete" in before, before
    assert f"http://127.0.0.1:{port}" in banner
    tokens = re.findall(r"^    (cfe_[A-Za-z0-9_-]{43})$", banner, re.M)
    assert len(tokens) == 1, banner
    until = re.search(r"valid until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", banner)
    assert until is not None
    expires = datetime.strptime(until.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    hours = (expires - datetime.now(UTC)).total_seconds() / 3600
    assert 71 < hours < 73
    assert "/api/v1/enroll" in banner and tokens[0] in banner.split("Next step", 1)[1]
    # A second start before enrolling voids that token and prints a new one.
    text2, _ = _serve_until_banner(config, "first@example.com")
    token2 = re.findall(r"^    (cfe_[A-Za-z0-9_-]{43})$", text2, re.M)[0]
    assert token2 != tokens[0]
    # The banner's next step works (the old token does not), then no token is issued again.
    from tests.support import Server

    server = Server(config, tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            body = {"password": STRONG_PASSWORD, "pin": PIN}
            assert http.post("/api/v1/enroll", json={"token": tokens[0], **body}).status_code == 400
            r = http.post("/api/v1/enroll", json={"token": token2, **body})
            assert r.status_code == 201 and r.json()["email"] == "first@example.com"
    finally:
        server.stop()
    text3, _ = _serve_until_banner(config, "first@example.com")
    assert "cfe_" not in text3
    assert "An administrator has enrolled" in text3
