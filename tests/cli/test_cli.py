"""The `coffre` command: init, user management, status, audit verification."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.support import COFFRE, init_data_dir, run_cli


def _tree_digest(root: Path) -> dict[str, str]:
    # SoftHSM rewrites token.object (its login bookkeeping) on every C_Login; the
    # key objects, the database and the config must not change.
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm")) and p.name != "token.object"
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    return init_data_dir(data)


def test_init_creates_everything_and_a_second_run_changes_nothing(tmp_path):
    import subprocess

    data = tmp_path / "d"
    first = subprocess.run(
        [COFFRE, "init", "--data-dir", str(data), "--rsa-bits", "2048"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    for name in ("coffre.toml", "coffre.db", "softhsm2.conf", "token.pin"):
        assert (data / name).exists(), name
    for private in ("coffre.toml", "token.pin", "coffre.db"):
        assert stat.S_IMODE((data / private).stat().st_mode) == 0o600, private
    assert "coffre-kek-v1" in first.stdout
    before = _tree_digest(data)
    second = subprocess.run(
        [COFFRE, "init", "--data-dir", str(data), "--rsa-bits", "2048"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert _tree_digest(data) == before


def test_invite_prints_the_token_last(lab):
    result = run_cli(lab, "user", "invite", "someone@example.com", "--admin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("cfe_")
    listed = run_cli(lab, "user", "list")
    assert "someone@example.com" in listed.stdout and "admin" in listed.stdout


def test_user_commands_exit_non_zero_with_a_message(lab):
    result = run_cli(lab, "user", "unlock", "nobody@example.com")
    assert result.returncode == 1
    assert "no user with this e-mail address" in result.stderr
    result = run_cli(lab, "user", "invite", "not-an-email")
    assert result.returncode == 1 and "e-mail" in result.stderr


def test_missing_config_is_an_actionable_error(tmp_path):
    result = run_cli(tmp_path / "missing.toml", "status")
    assert result.returncode == 3
    assert "configuration file not found" in result.stderr


def test_status_reports_keys_and_counts(lab):
    result = run_cli(lab, "status")
    assert result.returncode == 0, result.stderr
    for needle in (
        "libsofthsm2.so",
        "coffre-kek-v1 (current)",
        "protects",
        "coffre-pepper-v1",
        "coffre-audit-v1",
        "schema:",
        "users",
    ):
        assert needle in result.stdout, needle


def _audit_rows(config: Path) -> sqlite3.Connection:
    return sqlite3.connect(config.parent / "coffre.db")


@pytest.fixture
def audited(tmp_path: Path) -> Path:
    config = init_data_dir(tmp_path / "data")
    for i in range(3):
        assert run_cli(config, "user", "invite", f"u{i}@example.com").returncode == 0
    assert run_cli(config, "audit", "verify").returncode == 0
    return config


def test_audit_verify_detects_an_edit(audited):
    with _audit_rows(audited) as db:
        db.execute("update audit_log set details = '{\"is_admin\":true}' where seq = 3")
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "entry 3" in result.stderr and "modified" in result.stderr


def test_audit_verify_detects_a_deletion(audited):
    with _audit_rows(audited) as db:
        db.execute("delete from audit_log where seq = 2")
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "entry 2" in result.stderr and "missing" in result.stderr


def test_audit_verify_detects_a_reorder(audited):
    with _audit_rows(audited) as db:
        db.execute("update audit_log set seq = 100 where seq = 2")
        db.execute("update audit_log set seq = 2 where seq = 3")
        db.execute("update audit_log set seq = 3 where seq = 100")
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "entry 2" in result.stderr


def test_audit_verify_detects_a_truncated_tail(audited):
    with _audit_rows(audited) as db:
        db.execute("delete from audit_log where seq = (select max(seq) from audit_log)")
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "removed from the end" in result.stderr


def test_kek_rotation_reseals_without_any_user_secret(audited):
    result = run_cli(audited, "keys", "rotate", "kek")
    assert result.returncode == 0, result.stderr
    assert "coffre-kek-v2" in result.stdout
    status = run_cli(audited, "status").stdout
    assert "coffre-kek-v2 (current)" in status
    assert run_cli(audited, "audit", "verify").returncode == 0


def test_audit_verify_detects_a_cut_tail_with_a_rewritten_head(audited):
    """The review's finding: cut the tail and make the head row agree. The head row
    carries a MAC under the audit root now, so a rewritten head is caught."""
    with _audit_rows(audited) as db:
        db.execute("delete from audit_log where seq = (select max(seq) from audit_log)")
        seq, mac = db.execute("select seq, mac from audit_log order by seq desc limit 1").fetchone()
        db.execute("update audit_head set seq = ?, mac = ?", (seq, mac))
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "head row was modified" in result.stderr


def test_audit_verify_detects_a_deleted_head_row(audited):
    with _audit_rows(audited) as db:
        db.execute("delete from audit_log where seq = (select max(seq) from audit_log)")
        db.execute("delete from audit_head")
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "head row is missing" in result.stderr


def test_audit_verify_detects_an_emptied_log(audited):
    with _audit_rows(audited) as db:
        db.execute("delete from audit_log")
        db.execute("update audit_head set seq = 0, mac = ?, head_mac = NULL", ("0" * 64,))
    result = run_cli(audited, "audit", "verify")
    assert result.returncode == 1
    assert "empty" in result.stderr and "genesis" in result.stderr


def test_init_writes_the_genesis_entry_first(audited):
    with _audit_rows(audited) as db:
        assert db.execute("select event from audit_log where seq = 1").fetchone()[0] == "audit.genesis"


def test_audit_verify_against_a_recorded_head_detects_a_rolled_back_head(audited):
    """Cut the tail and put back a genuine older head row (from a backup): its MAC
    verifies, so only a head MAC recorded outside the appliance tells."""
    with _audit_rows(audited) as db:
        old_head = db.execute("select seq, mac, head_mac from audit_head").fetchone()
    assert run_cli(audited, "user", "invite", "late@example.com").returncode == 0
    head = run_cli(audited, "audit", "verify").stdout.split("head MAC ")[1].strip()
    with _audit_rows(audited) as db:
        db.execute("delete from audit_log where seq > ?", (old_head[0],))
        db.execute("update audit_head set seq = ?, mac = ?, head_mac = ?", old_head)
    assert run_cli(audited, "audit", "verify").returncode == 0  # invisible without an anchor...
    result = run_cli(audited, "audit", "verify", "--head", head)
    assert result.returncode == 1  # ...but not against the head recorded earlier
    assert "removed from the end" in result.stderr
