"""`coffre serve` as a real process: restart between writes and reads, nothing in
clear at rest or in the log, HSM outages answered with 503, two nodes."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import POSTGRES_URL, Server, TcpRelay, init_data_dir, postgres_url_or_reason, run_cli

PASSWORD = "Quartz-elephant-trombone-" + secrets.token_hex(4)
PIN = "917364"
ITEM_SECRET = "item-password-" + secrets.token_hex(8)
NOTE_SECRET = "launch codes " + secrets.token_hex(8)
USERNAME_SECRET = "svc-account-" + secrets.token_hex(4)


def _enroll_and_login(http: httpx.Client, token: str, email: str) -> dict[str, str]:
    r = http.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN})
    assert r.status_code == 201, r.text
    return _login(http, email)


def _login(http: httpx.Client, email: str) -> dict[str, str]:
    r = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    r = http.post("/api/v1/auth/unlock", json={"login_ticket": r.json()["login_ticket"], "pin": PIN})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _invite(config: Path, email: str, admin: bool = False) -> str:
    result = run_cli(config, "user", "invite", email, *(["--admin"] if admin else []))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    data = tmp_path / "data"
    config = init_data_dir(data)
    yield data, config


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in content]
    return hits


def test_restart_then_read_and_nothing_in_clear_at_rest(lab, tmp_path):
    data, config = lab
    log = tmp_path / "server.log"
    server = Server(config, log).start()
    try:
        with server.client() as http:
            admin = _enroll_and_login(http, _invite(config, "admin@example.com", admin=True), "admin@example.com")
            session_token = admin["Authorization"].split()[1]
            vault = http.post("/api/v1/vaults", json={"name": "Infra"}, headers=admin).json()
            r = http.post(
                f"/api/v1/vaults/{vault['id']}/items",
                headers=admin,
                json={
                    "title": "Primary DB",
                    "username": USERNAME_SECRET,
                    "password": ITEM_SECRET,
                    "url": "https://db.internal",
                    "notes": NOTE_SECRET,
                },
            )
            assert r.status_code == 201
            item_id = r.json()["id"]
    finally:
        server.stop()
    server = Server(config, log).start()  # restart: a new process, new HSM sessions
    try:
        with server.client() as http:
            r = http.get(f"/api/v1/items/{item_id}", headers=admin)  # the session survives the restart
            assert r.status_code == 200, r.text
            assert r.json()["password"] == ITEM_SECRET and r.json()["notes"] == NOTE_SECRET
            fresh = _login(http, "admin@example.com")
            assert http.get(f"/api/v1/items/{item_id}", headers=fresh).json()["username"] == USERNAME_SECRET
    finally:
        server.stop()

    needles = [s.encode() for s in (PASSWORD, PIN, ITEM_SECRET, NOTE_SECRET, USERNAME_SECRET, session_token)]
    assert _files_containing(data, needles) == []
    dump = "\n".join(sqlite3.connect(data / "coffre.db").iterdump()).encode()
    assert [n for n in needles if n in dump] == []
    server_log = log.read_bytes()
    assert b"GET /api/v1/items/" in server_log  # the log is really there
    assert [n for n in needles if n in server_log] == []
    assert run_cli(config, "audit", "verify").returncode == 0


def test_hsm_unavailable_gives_503_and_writes_nothing_then_recovers(lab, tmp_path):
    data, config = lab
    server = Server(config, tmp_path / "server.log").start()
    try:
        with server.client() as http:
            admin = _enroll_and_login(http, _invite(config, "admin@example.com", admin=True), "admin@example.com")
            vault = http.post("/api/v1/vaults", json={"name": "V"}, headers=admin).json()
            db = sqlite3.connect(data / "coffre.db")

            def counts() -> list[int]:
                tables = ("items", "audit_log", "sessions", "vaults")
                return [db.execute(f"select count(*) from {t}").fetchone()[0] for t in tables]

            before = counts()
            (data / "tokens").rename(data / "tokens.away")  # the token disappears
            try:
                assert http.get("/healthz").status_code == 503
                r = http.post(
                    f"/api/v1/vaults/{vault['id']}/items", json={"title": "t", "password": "p"}, headers=admin
                )
                assert r.status_code == 503, r.text
                assert "HSM" in r.json()["detail"]
                assert (
                    http.post(
                        "/api/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
                    ).status_code
                    == 503
                )
                assert counts() == before  # no half-written data
            finally:
                (data / "tokens.away").rename(data / "tokens")
            assert http.get("/healthz").status_code == 200  # back up: works again, no restart
            r = http.post(f"/api/v1/vaults/{vault['id']}/items", json={"title": "t", "password": "p"}, headers=admin)
            assert r.status_code == 201, r.text
    finally:
        server.stop()


def test_missing_module_gives_503_not_a_crash(lab, tmp_path):
    _, config = lab
    broken = tmp_path / "broken.toml"
    broken.write_text(config.read_text().replace("/usr/lib/softhsm/libsofthsm2.so", str(tmp_path / "gone.so")))
    server = Server(broken, tmp_path / "server.log").start(wait_healthy=False)
    try:
        with server.client() as http:
            r = http.get("/healthz")
            assert r.status_code == 503
            assert r.json()["error"] == "hsm_unavailable"
            r = http.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "whatever it is 12"})
            assert r.status_code == 503
    finally:
        server.stop()


def test_unreachable_database_is_refused_at_start(lab, tmp_path):
    _, config = lab
    broken = tmp_path / "broken.toml"
    text = config.read_text()
    url_line = next(line for line in text.splitlines() if line.startswith("url = "))
    broken.write_text(text.replace(url_line, 'url = "postgresql://nobody@127.0.0.1:1/none"'))
    result = run_cli(broken, "serve", "--port", "1")
    assert result.returncode != 0
    assert "database" in result.stderr.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
def test_database_going_away_gives_503_then_recovers(postgres_schema, tmp_path):
    relay = TcpRelay("127.0.0.1", 5432).start()
    url = postgres_schema.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    data = tmp_path / "data"
    config = init_data_dir(data, database_url=url)
    server = Server(config, tmp_path / "server.log").start()
    try:
        with server.client() as http:
            admin = _enroll_and_login(http, _invite(config, "admin@example.com", admin=True), "admin@example.com")
            vault = http.post("/api/v1/vaults", json={"name": "V"}, headers=admin).json()
            relay.cut()
            r = http.get("/healthz")
            assert r.status_code == 503
            assert r.json()["error"] == "database_unavailable"
            r = http.post(f"/api/v1/vaults/{vault['id']}/items", json={"title": "t"}, headers=admin)
            assert r.status_code == 503, r.text
            relay.start()
            assert http.get("/healthz").status_code == 200
            r = http.post(f"/api/v1/vaults/{vault['id']}/items", json={"title": "t"}, headers=admin)
            assert r.status_code == 201, r.text
            listed = http.get(f"/api/v1/vaults/{vault['id']}/items", headers=admin).json()
            assert len(listed) == 1  # nothing half-written during the outage
    finally:
        server.stop()
        relay.cut()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    base, reason = postgres_url_or_reason()
    if base is None:
        pytest.skip(reason)
    import psycopg

    name = "n_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.mark.postgres
def test_two_nodes_share_one_database_and_one_token(postgres_schema, tmp_path):
    data = tmp_path / "data"
    config = init_data_dir(data, database_url=postgres_schema)
    a = Server(config, tmp_path / "a.log").start()
    b = Server(config, tmp_path / "b.log").start()
    try:
        with a.client() as node_a, b.client() as node_b:
            admin = _enroll_and_login(node_a, _invite(config, "admin@example.com", True), "admin@example.com")
            vault = node_a.post("/api/v1/vaults", json={"name": "Shared"}, headers=admin).json()
            item = node_a.post(
                f"/api/v1/vaults/{vault['id']}/items", json={"title": "x", "password": ITEM_SECRET}, headers=admin
            ).json()
            # a session opened on node A is used on node B
            r = node_b.get(f"/api/v1/items/{item['id']}", headers=admin)
            assert r.status_code == 200, r.text
            assert r.json()["password"] == ITEM_SECRET
            # a session opened on B, logged out on B, is refused on A at once
            other = _login(node_b, "admin@example.com")
            assert node_a.get("/api/v1/me", headers=other).status_code == 200
            assert node_b.post("/api/v1/auth/logout", headers=other).status_code == 204
            assert node_a.get("/api/v1/me", headers=other).status_code == 401
            assert node_a.get(f"/api/v1/items/{item['id']}", headers=other).status_code == 401
            # and the first session still works on both
            assert node_a.get("/api/v1/me", headers=admin).status_code == 200
    finally:
        a.stop()
        b.stop()
    assert run_cli(config, "audit", "verify").returncode == 0
