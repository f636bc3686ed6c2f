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
    assert "someone@example.com" in listed.stdout and "ADMIN" in listed.stdout


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


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of an aligned table as dicts keyed by header; columns are found from the
    header row's positions (a header may hold one space, cells may not start with one)."""
    lines = text.rstrip("\n").splitlines()
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 2 : i] == "  ")]
    ends = [*starts[1:], None]
    names = [header[a:b].strip() for a, b in zip(starts, ends, strict=True)]
    rows = []
    for line in lines[1:]:
        for i in starts[1:]:  # aligned: every column starts after the previous one's padding
            assert len(line) <= i or (line[i - 2 : i] == "  " and line[i] != " "), (line, i)
        rows.append({n: line[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)})
    return rows


def status_sections(text: str) -> list[list[dict[str, str]]]:
    return [parse_table(block) for block in text.strip().split("\n\n")]


def test_status_prints_aligned_tables_with_headers(lab):
    result = run_cli(lab, "status")
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.strip().split("\n\n")
    assert [b.splitlines()[0].split()[0] for b in blocks] == ["SETTING", "ROOT", "RECORDS", "AUDIT", "MAIL"]
    settings, roots, counts, audit, mail = status_sections(result.stdout)
    assert {r["MAIL"]: r["VALUE"] for r in mail} == {"mail": "off ([mail] not set; links are handed to the sender)"}
    audit_values = {r["AUDIT"]: r["VALUE"] for r in audit}
    assert audit_values["forwarding"] == "off ([audit] forward not set)"
    assert audit_values["head"].startswith("entry ") and audit_values["last anchor"] == "none yet"
    values = {r["SETTING"]: r["VALUE"] for r in settings}
    assert values["HSM module"].endswith("libsofthsm2.so")
    assert values["config"] == str(lab)
    assert "(head " in values["schema"]
    # SoftHSM 2.6.1 enforces the user-key root's unwrap template (hsm/policy.py probes it)
    assert values["unwrap templates"].startswith("enforced (an unwrap breaking the template is refused")
    by_label = {r["LABEL"]: r for r in roots}
    assert by_label["coffre-kek-v1"] == {
        "ROOT": "kek",
        "LABEL": "coffre-kek-v1",
        "VERSION": "1",
        "CURRENT": "yes",
        "SEALED BLOBS": by_label["coffre-kek-v1"]["SEALED BLOBS"],
        "STATE": "current",
        "REFERENCES": by_label["coffre-kek-v1"]["SEALED BLOBS"],
    }
    assert by_label["coffre-kek-v1"]["SEALED BLOBS"].isdigit()
    assert by_label["coffre-pepper-v1"]["SEALED BLOBS"] == "-"
    assert {"coffre-audit-v1", "coffre-pepper-v1", "coffre-bind-v1", "coffre-ukw-v1"} <= set(by_label)
    assert {r["RECORDS"] for r in counts} >= {"users", "vaults", "items", "audit entries"}
    assert all(r["COUNT"].isdigit() for r in counts)


def test_status_json_is_for_scripts(lab):
    import json

    result = run_cli(lab, "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hsm"]["module"].endswith("libsofthsm2.so")
    assert report["hsm"]["error"] is None
    assert report["hsm"]["unwrap_template"]["enforced"] is True
    kek = [r for r in report["hsm"]["roots"] if r["kind"] == "kek"]
    assert kek[-1]["label"] == "coffre-kek-v1" and kek[-1]["current"] is True and isinstance(kek[-1]["sealed"], int)
    assert kek[-1]["state"] == "current" and kek[-1]["referenced"] == kek[-1]["sealed"]
    assert report["database"]["schema"] == report["database"]["head"]
    assert isinstance(report["counts"]["users"], int)


def test_user_list_is_a_table_and_json(lab):
    import json

    assert run_cli(lab, "user", "invite", "table-admin@example.com", "--admin").returncode == 0
    assert run_cli(lab, "user", "invite", "a.much.longer.address.for.alignment@example.com").returncode == 0
    result = run_cli(lab, "user", "list")
    assert result.returncode == 0, result.stderr
    rows = parse_table(result.stdout)
    assert list(rows[0]) == ["ID", "EMAIL", "ADMIN", "STATUS", "LOCKED"]
    by_email = {r["EMAIL"]: r for r in rows}
    assert by_email["table-admin@example.com"]["ADMIN"] == "yes"
    assert by_email["a.much.longer.address.for.alignment@example.com"]["ADMIN"] == "no"
    assert by_email["table-admin@example.com"]["STATUS"] == "invited"
    assert {r["LOCKED"] for r in rows} == {"no"}
    listed = json.loads(run_cli(lab, "user", "list", "--json").stdout)
    assert {u["email"]: (u["is_admin"], u["status"], u["locked"]) for u in listed} == {
        r["EMAIL"]: (r["ADMIN"] == "yes", r["STATUS"], r["LOCKED"] == "yes") for r in rows
    }
    assert all(set(u) == {"id", "email", "is_admin", "status", "locked"} for u in listed)
    assert sorted(u["id"] for u in listed) == sorted(r["ID"] for r in rows)


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
    roots = status_sections(run_cli(audited, "status").stdout)[1]
    current = [r["LABEL"] for r in roots if r["ROOT"] == "kek" and r["CURRENT"] == "yes"]
    assert current == ["coffre-kek-v2"]
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


def test_integrity_check_and_repair_commands(lab):
    check = run_cli(lab, "integrity", "check")
    assert check.returncode == 0, check.stderr
    assert "every anchored row verifies" in check.stdout
    refused = run_cli(lab, "integrity", "repair")
    assert refused.returncode == 2 and "--trust-database" in refused.stderr
    repaired = run_cli(lab, "integrity", "repair", "--trust-database")
    assert repaired.returncode == 0 and "re-anchored" in repaired.stdout
    assert run_cli(lab, "audit", "verify").returncode == 0


def test_user_delete_is_final_and_the_address_can_be_invited_again(lab):
    assert run_cli(lab, "user", "invite", "leaver@example.com").returncode == 0
    result = run_cli(lab, "user", "delete", "leaver@example.com")
    assert result.returncode == 0, result.stderr
    assert "deleted leaver@example.com" in result.stdout and "for good" in result.stdout
    assert "leaver@example.com" not in run_cli(lab, "user", "list").stdout
    again = run_cli(lab, "user", "delete", "leaver@example.com")
    assert again.returncode == 1 and "no user with this e-mail address" in again.stderr
    assert run_cli(lab, "user", "invite", "leaver@example.com").returncode == 0
    assert run_cli(lab, "audit", "verify").returncode == 0


def test_recovery_commands_say_what_is_missing(lab):
    result = run_cli(lab, "recovery", "status")
    assert result.returncode == 0 and "not enabled" in result.stdout
    assert run_cli(lab, "user", "invite", "officer-a@example.com").returncode == 0
    result = run_cli(
        lab, "recovery", "init", "--officers", "officer-a@example.com,officer-b@example.com", "--threshold", "2"
    )
    assert result.returncode == 1 and "officers must be enrolled" in result.stderr
    result = run_cli(lab, "recovery", "init", "--officers", "officer-a@example.com", "--threshold", "1")
    assert result.returncode == 1 and "threshold" in result.stderr
    result = run_cli(lab, "recovery", "request", "officer-a@example.com")
    assert result.returncode == 1 and "recovery is not enabled" in result.stderr
