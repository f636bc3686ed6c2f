"""End to end through Apache over https with the lab CA: health, enrollment,
login with password + PIN, storing and reading an item."""

from __future__ import annotations

import http.client
import json
import sqlite3
import ssl
import subprocess
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.support import ADMIN, HTTPS_PORT, LAB_CA, REPO

pytestmark = pytest.mark.skipif(
    not (REPO / "cli").is_dir(), reason="the core app (cli/, coffre command) has not landed yet"
)


class Client:
    def __init__(self) -> None:
        self.ctx = ssl.create_default_context(cafile=str(LAB_CA))
        self.token: str | None = None

    def call(
        self, method: str, path: str, payload: dict[str, Any] | None = None, extra: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("localhost", HTTPS_PORT, context=self.ctx, timeout=60)
        headers = {"Content-Type": "application/json", "Accept": "application/json", **(extra or {})}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=json.dumps(payload) if payload is not None else None, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")


def test_enroll_login_store_and_read_an_item(converged: Converge) -> None:
    client = Client()
    status, body = client.call("GET", "/healthz")
    assert status == 200, body

    email = f"e2e-{uuid.uuid4().hex[:12]}@example.com"
    invite = subprocess.run(
        [str(ADMIN), "user", "invite", email, "--admin"], capture_output=True, text=True, timeout=120, check=False
    )
    assert invite.returncode == 0, invite.stdout + invite.stderr
    enrollment = invite.stdout.strip().splitlines()[-1].strip()

    password = f"Vq7-harbor-Lantern-{uuid.uuid4().hex[:8]}"
    pin = "582914"
    status, body = client.call("POST", "/api/v1/enroll", {"token": enrollment, "password": password, "pin": pin})
    assert status == 201, body

    status, body = client.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    status, body = client.call("POST", "/api/v1/auth/unlock", {"login_ticket": body["login_ticket"], "pin": pin})
    assert status == 200, body
    client.token = body["token"]

    status, vault = client.call("POST", "/api/v1/vaults", {"name": "provisioning e2e"})
    assert status == 201, vault
    secret = f"s3cret-{uuid.uuid4().hex}"
    item = {"title": "router", "username": "admin", "password": secret, "url": "https://router.example", "notes": "e2e"}
    status, created = client.call("POST", f"/api/v1/vaults/{vault['id']}/items", item)
    assert status == 201, created

    status, read = client.call("GET", f"/api/v1/items/{created['id']}")
    assert status == 200, read
    assert read["password"] == secret
    assert read["username"] == "admin"
    assert read["title"] == "router"


def test_spoofed_forwarded_for_never_reaches_coffre(converged: Converge) -> None:
    """Apache drops a client's own X-Forwarded-For: Coffre's audit trail and
    rate limits see the address Apache saw, not one the client made up."""
    client = Client()
    spoofed = "203.0.113.77"
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    status, _ = client.call(
        "POST",
        "/api/v1/auth/login",
        {"email": email, "password": "Not-the-right-password-1"},
        extra={"X-Forwarded-For": spoofed, "Forwarded": f"for={spoofed}", "X-Real-IP": spoofed},
    )
    assert 400 <= status < 500
    db = Path("/var/lib/coffre/coffre.db")
    if not db.exists():
        pytest.skip("Coffre is not on SQLite here")
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        addrs = {row[0] for row in conn.execute("SELECT client_addr FROM audit_log")}
    assert spoofed not in addrs, addrs
    assert "127.0.0.1" in addrs, addrs


def test_wrong_pin_does_not_unlock(converged: Converge) -> None:
    client = Client()
    status, body = client.call("POST", "/api/v1/auth/unlock", {"login_ticket": "not-a-ticket", "pin": "000000"})
    assert 400 <= status < 500, body
