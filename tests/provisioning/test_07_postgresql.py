"""The PostgreSQL variant: Coffre on a local PostgreSQL reached over loopback
with scram-sha-256.

The test makes a private Debian cluster (its own port) so the machine's own
PostgreSQL is left alone, converges with postgresql_enabled, checks a second run
changes nothing and that Coffre works through Apache on it, then drops the
cluster. The next converge (or session) switches Coffre back to SQLite.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.provisioning.conftest import Converge
from tests.provisioning.support import ADMIN, PlaybookRun, run_playbook
from tests.provisioning.test_05_end_to_end import Client

VERSION = "15"
CLUSTER = "coffretest"
PORT = 55432

pytestmark = pytest.mark.skipif(
    shutil.which("pg_createcluster") is None or not Path(f"/usr/lib/postgresql/{VERSION}/bin/postgres").exists(),
    reason=f"PostgreSQL {VERSION} server and postgresql-common are not installed",
)


def _drop_cluster() -> None:
    subprocess.run(["pg_dropcluster", "--stop", VERSION, CLUSTER], capture_output=True, check=False, timeout=120)


def _psql(sql: str) -> str:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-p", str(PORT), "-XAtq", "-c", sql],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


class PgConverge:
    def __init__(self, first: PlaybookRun, second: PlaybookRun, password: str) -> None:
        self.first, self.second, self.password = first, second, password


@pytest.fixture(scope="module")
def pg_converged(converged: Converge, checkout_snapshot: Path) -> Iterator[PgConverge]:
    _drop_cluster()
    subprocess.run(
        ["pg_createcluster", VERSION, CLUSTER, "-p", str(PORT)], capture_output=True, check=True, timeout=180
    )
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
        first = run_playbook("--tags", "postgresql,appliance", extra_vars=extra)
        assert first.rc == 0, f"PostgreSQL converge failed:\n{first.tail()}"
        second = run_playbook("--tags", "postgresql,appliance", extra_vars=extra)
        assert second.rc == 0, f"PostgreSQL second run failed:\n{second.tail()}"
        yield PgConverge(first, second, password)
    finally:
        _drop_cluster()


def test_second_run_changes_nothing(pg_converged: PgConverge) -> None:
    assert pg_converged.second.recap.get("changed") == 0, pg_converged.second.changed_tasks()


def test_password_never_printed(pg_converged: PgConverge) -> None:
    assert pg_converged.password not in pg_converged.first.output
    assert pg_converged.password not in pg_converged.second.output


def test_server_listens_on_loopback_with_scram(pg_converged: PgConverge) -> None:
    assert _psql("SHOW listen_addresses") == "localhost"
    assert _psql("SHOW password_encryption") == "scram-sha-256"
    assert _psql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'coffre'") == "t"
    hba = Path(f"/etc/postgresql/{VERSION}/{CLUSTER}/pg_hba.conf").read_text()
    assert "host    coffre    coffre    127.0.0.1/32    scram-sha-256" in hba


def test_coffre_uses_postgresql_through_apache(pg_converged: PgConverge) -> None:
    config = Path("/etc/coffre/coffre.toml").read_text()
    assert "postgresql+psycopg://coffre:" in config and f"@127.0.0.1:{PORT}/coffre" in config
    client = Client()
    status, body = client.call("GET", "/healthz")
    assert status == 200, body
    email = f"pg-{uuid.uuid4().hex[:10]}@example.com"
    invite = subprocess.run(
        [str(ADMIN), "user", "invite", email], capture_output=True, text=True, timeout=120, check=False
    )
    assert invite.returncode == 0, invite.stdout + invite.stderr
    token = invite.stdout.strip().splitlines()[-1].strip()
    password = f"Quartz-meadow-Falcon-{uuid.uuid4().hex[:8]}"
    status, body = client.call("POST", "/api/v1/enroll", {"token": token, "password": password, "pin": "730146"})
    assert status == 201, body
    status, body = client.call("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    count = subprocess.run(
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
