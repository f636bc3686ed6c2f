"""The backup and restore drill, as an operator runs it (docs/operations.md), on
SQLite and on PostgreSQL: users, vaults, items; back up the database and the lab
token; destroy the data dir; restore; every item opens for its users, the audit log
verifies, the appliance accepts new writes. And the refusals: an edited backup, a
token that lacks a root version the backup needs."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from tests.support import PIN, STRONG_PASSWORD, Server, init_data_dir, postgres_url_or_reason, run_cli

SECRETS = ("drill-password-1", "drill-password-2", STRONG_PASSWORD)


def _login(http, email):
    ticket = http.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD}).json()["login_ticket"]
    r = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": PIN})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _enroll(config, http, email):
    token = run_cli(config, "user", "invite", email).stdout.strip().splitlines()[-1]
    assert (
        http.post("/api/v1/enroll", json={"token": token, "password": STRONG_PASSWORD, "pin": PIN}).status_code == 201
    )
    return _login(http, email)


def _populate(config, tmp_path):
    server = Server(config, tmp_path / "serve1.log").start()
    try:
        with server.client() as http:
            admin = _enroll(config, http, "admin@example.com")
            _enroll(config, http, "bob@example.com")
            vault = http.post("/api/v1/vaults", json={"name": "ops"}, headers=admin).json()["id"]
            http.post(
                f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "read"}, headers=admin
            )
            # Folders whose parent was created after them (a move), one restricted (keyed).
            inner = http.post(f"/api/v1/vaults/{vault}/folders", json={"name": "inner"}, headers=admin).json()["id"]
            outer = http.post(f"/api/v1/vaults/{vault}/folders", json={"name": "outer"}, headers=admin).json()["id"]
            assert http.patch(f"/api/v1/folders/{inner}", json={"parent_id": outer}, headers=admin).status_code == 200
            bob = next(
                m for m in http.get(f"/api/v1/vaults/{vault}/members", headers=admin).json() if m["role"] == "read"
            )
            r = http.put(f"/api/v1/folders/{inner}/access/{bob['user_id']}", json={"access": "none"}, headers=admin)
            assert r.status_code == 200
            items = [
                http.post(
                    f"/api/v1/vaults/{vault}/items",
                    json={"title": f"t{i}", "password": p, "folder_id": inner if i else None},
                    headers=admin,
                ).json()["id"]
                for i, p in enumerate(SECRETS[:2])
            ]
    finally:
        server.stop()
    return vault, items


def _database_url(kind: str, tmp_path: Path) -> str | None:
    if kind == "sqlite":
        return None
    base, reason = postgres_url_or_reason()
    if base is None:
        pytest.skip(reason)
    import secrets

    import psycopg

    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{base}?options=-csearch_path%3D{name}"


def _empty(kind: str, config: Path, url: str | None) -> None:
    """Destroy the database (the data dir's SQLite file, or every table of the schema)."""
    if kind == "sqlite":
        for f in config.parent.glob("coffre.db*"):
            f.unlink()
        return
    import psycopg

    base, schema = url.split("?options=-csearch_path%3D")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_backup_and_restore_drill(tmp_path, kind):
    url = _database_url(kind, tmp_path)
    try:
        _drill(tmp_path, kind, url)
    finally:
        if url is not None:
            import psycopg

            base, schema = url.split("?options=-csearch_path%3D")
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _drill(tmp_path: Path, kind: str, url: str | None) -> None:
    config = init_data_dir(tmp_path / "data", url)
    vault, items = _populate(config, tmp_path)
    backup = tmp_path / "coffre.backup"
    r = run_cli(config, "backup", "--out", str(backup))
    assert r.returncode == 0, r.stderr
    assert backup.stat().st_mode & 0o777 == 0o600
    raw = backup.read_bytes()
    with zipfile.ZipFile(backup) as z:
        raw += b"".join(z.read(n) for n in z.namelist())
    for secret in (*SECRETS, PIN):
        assert secret.encode() not in raw, "a secret in clear in the backup"
    token_copy = tmp_path / "token.tgz"
    assert run_cli(config, "token", "backup", "--out", str(token_copy)).returncode == 0

    # Disaster: the data dir is gone but for its configuration and the token PIN (kept apart).
    data = config.parent
    keep = {name: (data / name).read_bytes() for name in ("coffre.toml", "token.pin", "softhsm2.conf")}
    shutil.rmtree(data)
    _empty(kind, config, url)
    data.mkdir(mode=0o700)
    for name, content in keep.items():
        (data / name).write_bytes(content)
        (data / name).chmod(0o600)
    assert run_cli(config, "token", "restore", str(token_copy)).returncode == 0
    r = run_cli(config, "restore", str(backup))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "audit log OK" in r.stdout
    assert run_cli(config, "integrity", "check").returncode == 0
    assert run_cli(config, "audit", "verify").returncode == 0

    server = Server(config, tmp_path / "serve2.log").start()
    try:
        with server.client() as http:
            admin, bob = _login(http, "admin@example.com"), _login(http, "bob@example.com")
            got = [http.get(f"/api/v1/items/{i}", headers=admin).json()["password"] for i in items]
            assert got == list(SECRETS[:2])
            assert http.get(f"/api/v1/items/{items[0]}", headers=bob).json()["password"] == SECRETS[0]
            assert http.get(f"/api/v1/items/{items[1]}", headers=bob).status_code == 404  # "none" on its folder
            r = http.post(f"/api/v1/vaults/{vault}/items", json={"title": "after", "password": "x"}, headers=admin)
            assert r.status_code == 201
    finally:
        server.stop()
    assert run_cli(config, "audit", "verify").returncode == 0
    # A restore refuses a database that is not empty.
    assert run_cli(config, "restore", str(backup)).returncode == 1


@pytest.mark.slow
def test_an_edited_backup_and_a_token_without_its_roots_are_refused(tmp_path):
    config = init_data_dir(tmp_path / "data")
    _populate(config, tmp_path)
    assert run_cli(config, "keys", "rotate", "kek").returncode == 0  # blobs now under coffre-kek-v2
    backup = tmp_path / "coffre.backup"
    assert run_cli(config, "backup", "--out", str(backup)).returncode == 0

    edited = tmp_path / "edited.backup"
    with zipfile.ZipFile(backup) as src, zipfile.ZipFile(edited, "w") as dst:
        for name in src.namelist():
            body = src.read(name)
            if name == "tables/vault_members.jsonl":
                body = body.replace(b'"role":"read"', b'"role":"admin"')
            dst.writestr(name, body)
    other = init_data_dir(tmp_path / "other")  # an empty appliance with its own token
    for config_used, archive, expected in (
        (config, edited, "integrity check"),  # (refused on a non-empty database anyway; the MAC first)
        (other, backup, "coffre-kek-v2"),  # the other token has no KEK v2 (nor this token's keys)
    ):
        r = run_cli(config_used, "restore", str(archive))
        assert r.returncode == 1, r.stdout
        assert expected in r.stderr, r.stderr
