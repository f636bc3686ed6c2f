"""End to end through Apache over https with the lab CA (in the sandbox):
health, enrollment, login with password + PIN, storing and reading an item; and
the client address Coffre records is the one Apache saw, through its socket."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from typing import Any

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import ADMIN, HTTPS_PORT, LAB_CA, REPO, sandbox_sql

pytestmark = pytest.mark.skipif(
    not (REPO / "cli").is_dir(), reason="the core app (cli/, coffre command) has not landed yet"
)


class Client:
    """https to the sandbox's Apache, trusting the sandbox's lab CA."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.ctx = ssl.create_default_context(cafile=str(sandbox.path(LAB_CA)))
        self.token: str | None = None

    def call(
        self, method: str, path: str, payload: dict[str, Any] | None = None, extra: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("localhost", HTTPS_PORT, context=self.ctx, timeout=60)
        conn._create_connection = self.sandbox.create_connection  # type: ignore[attr-defined]
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


def test_enroll_login_store_and_read_an_item(sandbox: Sandbox, converged: Converge) -> None:
    client = Client(sandbox)
    status, body = client.call("GET", "/healthz")
    assert status == 200, body

    email = f"e2e-{uuid.uuid4().hex[:12]}@example.com"
    invite = sandbox.run([str(ADMIN), "user", "invite", email, "--admin"], capture_output=True, text=True, timeout=120)
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


def _audited_addrs(sandbox: Sandbox) -> set[object]:
    db = "/var/lib/coffre/coffre.db"
    if not sandbox.path(db).exists():
        pytest.skip("Coffre is not on SQLite here")
    return {row[0] for row in sandbox_sql(sandbox, db, "SELECT client_addr FROM audit_log")}


def test_spoofed_forwarded_for_never_reaches_coffre(sandbox: Sandbox, converged: Converge) -> None:
    """Apache drops a client's own X-Forwarded-For and sends, over Coffre's
    socket, the address it saw: Coffre's audit trail and rate limits see that
    address, not one the client made up (nor "unix", which would mean the
    header Apache sent was not believed)."""
    client = Client(sandbox)
    spoofed = "203.0.113.77"
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    status, _ = client.call(
        "POST",
        "/api/v1/auth/login",
        {"email": email, "password": "Not-the-right-password-1"},
        extra={"X-Forwarded-For": spoofed, "Forwarded": f"for={spoofed}", "X-Real-IP": spoofed},
    )
    assert 400 <= status < 500
    addrs = _audited_addrs(sandbox)
    assert spoofed not in addrs, addrs
    assert "127.0.0.1" in addrs, addrs
    assert "unix" not in addrs, addrs


def test_a_local_process_on_the_socket_is_not_apache(sandbox: Sandbox, converged: Converge) -> None:
    """A local process that is neither Apache nor Coffre cannot reach Coffre at
    all: there is no TCP port to send a forged header to, and the socket refuses it."""
    probe = (
        "import http.client,socket,sys\n"
        "for port in (8080, 18080):\n"
        " try:\n  socket.create_connection(('127.0.0.1', port), timeout=5)\n"
        " except ConnectionRefusedError:\n  pass\n"
        " else:\n  sys.exit(f'something listens on {port}')\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('refused')\n"
    )
    run = sandbox.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", probe, "/run/coffre/coffre.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "refused"


def test_wrong_pin_does_not_unlock(sandbox: Sandbox, converged: Converge) -> None:
    client = Client(sandbox)
    status, body = client.call("POST", "/api/v1/auth/unlock", {"login_ticket": "not-a-ticket", "pin": "000000"})
    assert 400 <= status < 500, body
