"""Key jobs as an operator runs them (docs/operations.md, "Rotating keys"):
dry run, one job per kind across processes, retirement, a backup older than a
retired key, the vault key on demand."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

from tests.keyops.helpers import deploy, login
from tests.support import run_cli


def _db(d) -> sqlite3.Connection:
    return sqlite3.connect(d.config.parent / "coffre.db", timeout=15)


def _blobs(d) -> dict[str, bytes]:
    with _db(d) as db:
        users = db.execute("select 'u'||id, private_key_blob from users where private_key_blob is not null").fetchall()
        sessions = db.execute("select 's'||id, key_blob from sessions").fetchall()
    return dict(users + sessions)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def deployment(tmp_path):
    d = deploy(tmp_path, users=3, items=3, sessions=6)
    try:
        yield d
    finally:
        d.server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One deployment for the tests below that build on each other in file order
    (dry run first, then a vault, audit, pepper and KEK rotation)."""
    d = deploy(tmp_path_factory.mktemp("shared"), users=3, items=3, sessions=6)
    try:
        yield d
    finally:
        d.server.stop()


def test_dry_run_counts_and_changes_nothing(shared):
    d = shared
    before = _blobs(d)
    roots = [r["label"] for r in d.status()["hsm"]["roots"]]
    result = d.cli("keys", "rotate", "kek", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["target"] == "coffre-kek-v2" and plan["dry_run"] is True and plan["resumes"] is None
    assert plan["tables"]["users.private_key_blob"] == 3
    assert plan["tables"]["sessions.key_blob"] == len(before) - 3
    assert plan["total"] == len(before)
    assert _blobs(d) == before
    assert [r["label"] for r in d.status()["hsm"]["roots"]] == roots, "no version created"
    assert d.job_rows() == []


def test_one_job_per_kind_a_live_lease_refuses_a_dead_one_is_taken_over(deployment):
    d = deployment
    first = d.popen("keys", "rotate", "kek", "--batch", "2")
    try:
        _wait_for(lambda: any(j["lease_holder"] for j in d.job_rows()))
        first.send_signal(signal.SIGSTOP)  # alive, holding its lease, doing nothing
        second = d.cli("keys", "rotate", "kek")
        assert second.returncode == 1, second.stdout
        assert "is being run by" in second.stderr
        [job] = d.job_rows()
        assert job["target"] == "coffre-kek-v2" and job["active_kind"] == "kek"
        # On another node, the lease holds until it expires, then the job is taken over.
        with _db(d) as db:
            db.execute("update key_jobs set lease_holder = 'other-node:4242:1', lease_expires = ?", (time.time() + 60,))
        refused = d.cli("keys", "rotate", "kek", "--resume", job["id"])
        assert refused.returncode == 1 and "other-node" in refused.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with _db(d) as db:
            db.execute("update key_jobs set lease_expires = ?", (time.time() - 1,))
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    taken = d.cli("keys", "rotate", "kek", "--json")
    assert taken.returncode == 0, taken.stderr
    last = json.loads(taken.stdout.splitlines()[-1])
    assert last["id"] == job["id"] and last["state"] == "done" and last["failed"] == 0
    assert [j["target"] for j in d.job_rows()] == ["coffre-kek-v2"]
    d.check_everything_opens()

    # A holder killed on this host is taken over at once, its lease still running.
    killed = d.cli("keys", "rotate", "kek", "--batch", "2", env={"COFFRE_KEYOPS_KILL_AT_ROW": "3"})
    assert killed.returncode == -signal.SIGKILL
    job = d.job_rows()[-1]
    assert job["target"] == "coffre-kek-v3" and job["lease_expires"] > time.time()
    resumed = d.cli("keys", "rotate", "kek")
    assert resumed.returncode == 0, resumed.stderr
    assert f"job {job['id']}" in resumed.stdout and "done" in resumed.stdout
    listing = d.cli("keys", "jobs")
    assert job["id"] in listing.stdout and "done" in listing.stdout


def test_retire_refused_while_referenced_accepted_after_and_nothing_breaks(deployment):
    d = deployment
    with _db(d) as db:
        user_id, old_blob = db.execute("select id, private_key_blob from users limit 1").fetchone()

    # The job row is in the database: a writer who moves its cursor past every row (and
    # zeroes its counts) makes the pass skip them, but the final sweep re-counts from the
    # blobs themselves, so the job still ends with every row under the new version.
    killed = d.cli("keys", "rotate", "kek", "--batch", "2", env={"COFFRE_KEYOPS_KILL_AT_ROW": "1"})
    assert killed.returncode == -signal.SIGKILL
    skip = json.dumps({"users.private_key_blob": "~", "sessions.key_blob": "~"})
    with _db(d) as db:
        db.execute("update key_jobs set cursor = ?, total = 0, done = 0", (skip,))
    resumed = d.cli("keys", "rotate", "kek", "--json")
    assert resumed.returncode == 0, resumed.stderr
    last = json.loads(resumed.stdout.splitlines()[-1])
    assert last["state"] == "done" and last["failed"] == 0 and last["done"] >= len(_blobs(d)) - 1
    current = d.cli("keys", "retire", "coffre-kek-v2")
    assert current.returncode == 1 and "current version" in current.stderr

    # A database writer puts an old-KEK blob back and makes its label column lie:
    # the references are counted from the blobs themselves.
    with _db(d) as db:
        new_blob = db.execute("select private_key_blob from users where id = ?", (user_id,)).fetchone()[0]
        db.execute(
            "update users set private_key_blob = ?, kek_label = 'coffre-kek-v2' where id = ?", (old_blob, user_id)
        )
    refused = d.cli("keys", "retire", "coffre-kek-v1", "--json")
    assert refused.returncode == 1
    result = json.loads(refused.stdout)
    assert result["references"] == {"users.private_key_blob": 1} and result["retired"] is False
    with _db(d) as db:
        db.execute("update users set private_key_blob = ? where id = ?", (new_blob, user_id))

    dry = d.cli("keys", "retire", "coffre-kek-v1", "--dry-run")
    assert dry.returncode == 0 and "can be retired" in dry.stdout
    assert any(r["label"] == "coffre-kek-v1" for r in d.status()["hsm"]["roots"] if r["state"] == "old")
    done = d.cli("keys", "retire", "coffre-kek-v1")
    assert done.returncode == 0, done.stderr
    states = {r["label"]: r["state"] for r in d.status()["hsm"]["roots"] if r["label"]}
    assert states["coffre-kek-v1"] == "retired" and states["coffre-kek-v2"] == "current"
    d.check_everything_opens()
    assert d.cli("audit", "verify").returncode == 0
    with _db(d) as db:
        events = [e for (e,) in db.execute("select event from audit_log order by seq")]
    assert "key.retired" in events and "key.job.started" in events and "key.job.done" in events
    assert events.count("key.job.progress") >= 1
    again = d.cli("keys", "retire", "coffre-kek-v1")
    assert again.returncode == 1 and "not on the token" in again.stderr


def test_a_backup_older_than_a_retired_key_is_refused_naming_it(tmp_path):
    d = deploy(tmp_path, users=2, items=2)
    try:
        backup = tmp_path / "before.backup"
        assert d.cli("backup", "--out", str(backup)).returncode == 0  # blobs under coffre-kek-v1
        assert d.cli("keys", "rotate", "kek").returncode == 0
        assert d.cli("keys", "retire", "coffre-kek-v1").returncode == 0
    finally:
        d.server.stop()
    # The same token, an empty database: the restore needs coffre-kek-v1, now destroyed.
    for f in d.config.parent.glob("coffre.db*"):
        f.unlink()
    r = run_cli(d.config, "restore", str(backup))
    assert r.returncode == 1, r.stdout
    assert "coffre-kek-v1" in r.stderr, r.stderr


def test_vault_key_on_demand_api_and_cli(shared):
    d = shared
    admin = d.headers[d.users[0]]
    member = d.headers[d.users[1]]
    with d.http() as http:
        denied = http.post(f"/api/v1/vaults/{d.vault}/rotate", headers=member)
        assert denied.status_code == 403
        assert http.post("/api/v1/vaults/0123456789abcdef0123456789abcdef/rotate", headers=admin).status_code == 404
        r = http.post(f"/api/v1/vaults/{d.vault}/rotate", headers=admin)
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["kind"] == "vault" and job["state"] == "done" and job["done"] == len(d.items)
    d.check_everything_opens()
    # The operator has no member's key: the rotation waits for a vault administrator.
    scheduled = d.cli("vault", "rotate", d.vault, "--json")
    assert scheduled.returncode == 0, scheduled.stderr
    waiting = json.loads(scheduled.stdout)
    assert waiting["state"] == "waiting"
    with d.http() as http:
        assert http.get("/api/v1/vaults", headers=admin).status_code == 200  # the admin's next action
    jobs = {j["id"]: j for j in d.job_rows()}  # read as stored: the listing that rotated it ended it
    assert jobs[waiting["id"]]["state"] == "done"
    d.check_everything_opens()


def test_audit_rotation_links_the_chains(shared):
    d = shared
    r = d.cli("keys", "rotate", "audit")
    assert r.returncode == 0, r.stderr
    d.check_everything_opens()  # new entries (under v2, once nodes switched)
    assert d.cli("audit", "verify").returncode == 0
    with _db(d) as db:
        rows = db.execute("select event, key_label, details from audit_log order by seq").fetchall()
    linked = [json.loads(details) for event, _, details in rows if event == "audit.key_rotated"]
    assert linked and linked[0]["old"] == "coffre-audit-v1" and linked[0]["new"] == "coffre-audit-v2"
    assert len(linked[0]["endorsement"]) == 64
    assert {label for _, label, _ in rows} >= {"coffre-audit-v1"}
    refused = d.cli("keys", "retire", "coffre-audit-v1")
    assert refused.returncode == 1 and "audit_log.key_label" in refused.stdout


def test_pepper_rotation_waits_for_each_user(shared):
    d = shared
    first = d.cli("keys", "rotate", "pepper", "--json")
    assert first.returncode == 0, first.stderr
    view = json.loads(first.stdout.splitlines()[-1])
    assert view["state"] == "waiting" and view["detail"]["users_left"] == 3
    time.sleep(1.2)  # the node's root cache (hsm.root_ttl_seconds = 1 in tests)
    d.check_everything_opens()  # every user logs in: password hash and PIN key move
    again = d.cli("keys", "rotate", "pepper", "--json")
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout.splitlines()[-1])
    assert done["id"] == view["id"] and done["state"] == "done"
    d.check_everything_opens()
    assert d.cli("keys", "retire", "coffre-pepper-v1").returncode == 0
    d.check_everything_opens()


def test_ukw_rotation_gives_each_user_a_new_pair_at_their_next_unlock(shared):
    d = shared
    first = d.cli("keys", "rotate", "ukw", "--json")
    assert first.returncode == 0, first.stderr
    view = json.loads(first.stdout.splitlines()[-1])
    assert view["state"] == "waiting" and view["detail"]["users_left"] == 3 and view["detail"]["requested"] == 3
    time.sleep(1.2)
    d.check_everything_opens()  # each unlock makes a new pair (under ukw v2) and re-wraps the vault key
    again = d.cli("keys", "rotate", "ukw", "--json")
    done = json.loads(again.stdout.splitlines()[-1])
    assert done["id"] == view["id"] and done["state"] == "done", done
    assert d.cli("keys", "retire", "coffre-ukw-v1").returncode == 0
    d.check_everything_opens()


def test_bind_rotation_remakes_every_binding_and_row_mac(shared):
    d = shared
    admin = d.headers[d.users[0]]
    with d.http() as http:  # a folder with its own key: user2 has no access
        folder = http.post(f"/api/v1/vaults/{d.vault}/folders", json={"name": "restricted"}, headers=admin).json()["id"]
        members = http.get(f"/api/v1/vaults/{d.vault}/members", headers=admin).json()
        user2 = next(m["user_id"] for m in members if m["email"] == d.users[2])
        r = http.put(f"/api/v1/folders/{folder}/access/{user2}", json={"access": "none"}, headers=admin)
        assert r.status_code == 200, r.text
        r = http.post(
            f"/api/v1/vaults/{d.vault}/items",
            json={"title": "in folder", "password": "folder-secret", "folder_id": folder},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        d.items[r.json()["id"]] = "folder-secret"
        # Sends: one to a user (its wrapped key is bound), one under a code (row MAC only).
        to_user = http.post(
            "/api/v1/sends",
            json={"secret": "sent-to-user2", "mode": "user", "recipient_email": d.users[2]},
            headers=admin,
        )
        by_code = http.post("/api/v1/sends", json={"secret": "sent-by-code", "mode": "code"}, headers=admin)
        assert to_user.status_code == 201 and by_code.status_code == 201, to_user.text + by_code.text
    with _db(d) as db:
        assert db.execute("select count(*) from folder_keys").fetchone()[0] >= 2
    r = d.cli("keys", "rotate", "bind", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    done = json.loads(r.stdout.splitlines()[-1])
    assert done["state"] == "done" and done["failed"] == 0 and done["done"] > 0
    d.check_everything_opens()
    assert d.cli("integrity", "check").returncode == 0
    with _db(d) as db:
        for table, column in (("users", "row_mac"), ("users", "public_key_mac"), ("vaults", "row_mac")):
            labels = {v.split(":")[0] for (v,) in db.execute(f"select {column} from {table}")}
            assert labels == {"coffre-bind-v2"}, (table, column, labels)
        for table in ("vault_members", "folder_keys"):
            rows = db.execute(f"select wrapped_key_mac, row_mac from {table}").fetchall()
            assert {m.split(":")[0] for row in rows for m in row} == {"coffre-bind-v2"}, table
        for table in ("folders", "folder_access"):
            assert {v.split(":")[0] for (v,) in db.execute(f"select row_mac from {table}")} == {"coffre-bind-v2"}
        send_macs = db.execute("select mac, wrapped_key_mac from sends").fetchall()
        assert {m.split(":")[0] for row in send_macs for m in row if m} == {"coffre-bind-v2"}, send_macs
    with d.http() as http:  # the moved bindings still open: the send reaches user2, the code send reveals
        received = http.get("/api/v1/received", headers=login(http, d.users[2]))
        assert received.status_code == 200 and len(received.json()) == 1, received.text
        token = by_code.json()["url"].rsplit("/", 1)[-1]
        revealed = http.post(f"/api/v1/public/sends/{token}/reveal", json={"code": by_code.json()["code"]})
        assert revealed.status_code == 200 and revealed.json()["password"] == "sent-by-code", revealed.text
    # What cannot move (one-time tokens expire; they were MACed under v1) keeps v1.
    refused = d.cli("keys", "retire", "coffre-bind-v1", "--json")
    assert refused.returncode == 1
    left = json.loads(refused.stdout)["references"]
    assert set(left) <= {"one_time_tokens.mac", "login_tickets.mac"}, left


def test_secrets_stay_out_of_job_rows_and_output(shared):
    d = shared
    r = d.cli("keys", "rotate", "kek", "--json")
    assert r.returncode == 0
    dumped = json.dumps(d.job_rows()) + r.stdout + r.stderr
    for secret in list(d.items.values()):
        assert secret not in dumped
    assert os.environ.get("COFFRE_KEYOPS_KILL_AT_ROW") is None
