"""The PostgreSQL variant: Coffre on a local PostgreSQL reached over loopback
with scram-sha-256.

The test makes a private Debian cluster (its own port) in the sandbox,
converges with postgresql_enabled, checks a second run changes nothing and that
Coffre works through Apache on it, then drops the cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import ADMIN, PlaybookRun, run_playbook
from tests.provisioning.test_05_end_to_end import Client

VERSION = "15"
CLUSTER = "coffretest"
PORT = 55432


def _installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True)
    return proc.stdout.strip() == "installed"


pytestmark = pytest.mark.skipif(
    shutil.which("pg_createcluster") is None
    or not Path(f"/usr/lib/postgresql/{VERSION}/bin/postgres").exists()
    or not (_installed("postgresql") and _installed("postgresql-client")),
    reason=f"PostgreSQL {VERSION} (postgresql, postgresql-client) is not installed; the sandbox cannot download it",
)


def _drop_cluster(sandbox: Sandbox) -> None:
    sandbox.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, timeout=120)


def _psql(sandbox: Sandbox, sql: str) -> str:
    return sandbox.run(
        ["runuser", "-u", "postgres", "--", "psql", "-p", str(PORT), "-XAtq", "-c", sql],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


class PgConverge:
    def __init__(self, sandbox: Sandbox, first: PlaybookRun, second: PlaybookRun, password: str) -> None:
        self.sandbox, self.first, self.second, self.password = sandbox, first, second, password


@pytest.fixture(scope="module")
def pg_converged(sandbox: Sandbox, converged: Converge, checkout_snapshot: Path) -> Iterator[PgConverge]:
    _drop_cluster(sandbox)
    sandbox.run(["pg_createcluster", VERSION, CLUSTER, "-p", str(PORT)], capture_output=True, check=True, timeout=180)
    password = f"pg-{uuid.uuid4().hex}"
    extra = {
        "appliance_source": str(checkout_snapshot),
        "postgresql_enabled": True,
        "postgresql_manage_server": True,
        "postgresql_cluster": CLUSTER,
        "postgresql_version": VERSION,
        "postgresql_port": PORT,
        "postgresql_password": password,
    }
    try:
        # Only the roles this variant changes; the full play is covered by test_02.
        first = run_playbook(sandbox, "--tags", "postgresql,appliance", extra_vars=extra)
        assert first.rc == 0, f"PostgreSQL converge failed:\n{first.tail()}"
        second = run_playbook(sandbox, "--tags", "postgresql,appliance", extra_vars=extra)
        assert second.rc == 0, f"PostgreSQL second run failed:\n{second.tail()}"
        yield PgConverge(sandbox, first, second, password)
    finally:
        _drop_cluster(sandbox)


def test_second_run_changes_nothing(pg_converged: PgConverge) -> None:
    assert pg_converged.second.recap.get("changed") == 0, pg_converged.second.changed_tasks()


def test_password_never_printed(pg_converged: PgConverge) -> None:
    assert pg_converged.password not in pg_converged.first.output
    assert pg_converged.password not in pg_converged.second.output


def test_server_listens_on_loopback_with_scram(pg_converged: PgConverge) -> None:
    box = pg_converged.sandbox
    assert _psql(box, "SHOW listen_addresses") == "localhost"
    assert _psql(box, "SHOW password_encryption") == "scram-sha-256"
    assert _psql(box, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'coffre'") == "t"
    hba = box.path(f"/etc/postgresql/{VERSION}/{CLUSTER}/pg_hba.conf").read_text()
    assert "host    coffre    coffre    127.0.0.1/32    scram-sha-256" in hba


def test_coffre_uses_postgresql_through_apache(pg_converged: PgConverge) -> None:
    box = pg_converged.sandbox
    config = box.path("/etc/coffre/coffre.toml").read_text()
    assert "postgresql+psycopg://coffre:" in config and f"@127.0.0.1:{PORT}/coffre" in config
    client = Client(box)
    status, body = client.call("GET", "/healthz")
    assert status == 200, body
    email = f"pg-{uuid.uuid4().hex[:10]}@example.com"
    invite = box.run([str(ADMIN), "user", "invite", email], capture_output=True, text=True, timeout=120)
    assert invite.returncode == 0, invite.stdout + invite.stderr
    token = invite.stdout.strip().splitlines()[-1].strip()
    password = f"Quartz-meadow-Falcon-{uuid.uuid4().hex[:8]}"
    status, body = client.call("POST", "/api/v1/enroll", {"token": token, "password": password, "pin": "730146"})
    assert status == 201, body
    status, body = client.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    count = box.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-p",
            str(PORT),
            "-d",
            "coffre",
            "-XAtq",
            "-c",
            "SELECT count(*) FROM users",
        ],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert int(count) >= 1
