"""A small deployment for key job tests: its own lab token and SQLite database
(`coffre init`), a `coffre serve` node, users with sessions, a vault with items."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import COFFRE, PIN, STRONG_PASSWORD, Server, init_data_dir, run_cli

# Many logins from one address during a test.
LIMITS = "[security]\naddress_attempts = 100000\naccount_attempts = 100000\n"


def login(http: httpx.Client, email: str) -> dict[str, str]:
    r = http.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert r.status_code == 200, r.text
    r = http.post("/api/v1/auth/unlock", json={"login_ticket": r.json()["login_ticket"], "pin": PIN})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@dataclass
class Deployment:
    config: Path
    server: Server
    users: list[str] = field(default_factory=list)
    vault: str = ""
    items: dict[str, str] = field(default_factory=dict)  # item id -> password
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def http(self) -> httpx.Client:
        return self.server.client()

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        if not env:
            return run_cli(self.config, *args, timeout=timeout)
        full = {**os.environ, "COFFRE_CONFIG": str(self.config), **env}
        full.pop("SOFTHSM2_CONF", None)
        return subprocess.run([COFFRE, *args], capture_output=True, text=True, env=full, timeout=timeout, check=False)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "COFFRE_CONFIG": str(self.config)}
        env.pop("SOFTHSM2_CONF", None)
        return subprocess.Popen([COFFRE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def jobs(self) -> list[dict[str, Any]]:
        result = self.cli("keys", "jobs", "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    def job_rows(self) -> list[dict[str, Any]]:
        """The key_jobs rows read straight from the SQLite file (no process start)."""
        import sqlite3

        db = sqlite3.connect(self.config.parent / "coffre.db", timeout=15)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("select * from key_jobs order by started_at")]
        finally:
            db.close()

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def check_everything_opens(self) -> None:
        """Every user logs in (a fresh session) and every item opens for the vault's admin."""
        with self.http() as http:
            for email in self.users:
                self.headers[email] = login(http, email)
            admin = self.headers[self.users[0]]
            for item, password in self.items.items():
                r = http.get(f"/api/v1/items/{item}", headers=admin)
                assert r.status_code == 200, r.text
                assert r.json()["password"] == password


def deploy(
    tmp_path: Path, users: int = 3, items: int = 4, sessions: int = 0, database_url: str | None = None
) -> Deployment:
    config = init_data_dir(tmp_path / "data", database_url, extra=LIMITS)
    server = Server(config, tmp_path / "serve.log").start()
    d = Deployment(config, server)
    try:
        with d.http() as http:
            for i in range(users):
                email = f"user{i}@example.com"
                token = run_cli(config, "user", "invite", email, *(["--admin"] if i == 0 else [])).stdout.splitlines()[
                    -1
                ]
                r = http.post("/api/v1/enroll", json={"token": token, "password": STRONG_PASSWORD, "pin": PIN})
                assert r.status_code == 201, r.text
                d.users.append(email)
                d.headers[email] = login(http, email)
            admin = d.headers[d.users[0]]
            d.vault = http.post("/api/v1/vaults", json={"name": "ops"}, headers=admin).json()["id"]
            for email in d.users[1:]:
                r = http.post(
                    f"/api/v1/vaults/{d.vault}/members", json={"email": email, "role": "write"}, headers=admin
                )
                assert r.status_code in (200, 201), r.text
            for i in range(items):
                password = f"item-secret-{i}"
                r = http.post(
                    f"/api/v1/vaults/{d.vault}/items", json={"title": f"t{i}", "password": password}, headers=admin
                )
                assert r.status_code == 201, r.text
                d.items[r.json()["id"]] = password
            for i in range(sessions):
                login(http, d.users[i % users])
    except BaseException:
        server.stop()
        raise
    return d
