"""[server] log_format = "json": one object per line, request fields, no secret."""

from __future__ import annotations

import json
import secrets

from tests.support import Server, init_data_dir, run_cli

PASSWORD = "Velvet-harbour-compass-" + secrets.token_hex(4)
PIN = "604718"
ITEM_SECRET = "db-password-" + secrets.token_hex(8)


def test_json_lines_with_request_fields_and_no_secret(tmp_path):
    data = tmp_path / "data"
    config = init_data_dir(data)
    log_file = tmp_path / "coffre.log"
    text = config.read_text().replace("[server]\n", f'[server]\nlog_format = "json"\nlog_file = "{log_file}"\n', 1)
    assert text != config.read_text(), "coffre.toml has a [server] table"
    config.write_text(text)
    invited = run_cli(config, "user", "invite", "admin@example.com", "--admin")
    enrollment = invited.stdout.strip().splitlines()[-1]
    server = Server(config, tmp_path / "stdout.log").start()
    try:
        with server.client() as http:
            assert (
                http.post("/api/v1/enroll", json={"token": enrollment, "password": PASSWORD, "pin": PIN}).status_code
                == 201
            )
            r = http.post("/api/v1/auth/login", json={"email": "admin@example.com", "password": PASSWORD})
            ticket = r.json()["login_ticket"]
            r = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": PIN})
            session = r.json()["token"]
            auth = {"Authorization": f"Bearer {session}"}
            vault = http.post("/api/v1/vaults", json={"name": "Ops"}, headers=auth).json()
            item = http.post(
                f"/api/v1/vaults/{vault['id']}/items", headers=auth, json={"title": "DB", "password": ITEM_SECRET}
            ).json()
            r = http.get(f"/api/v1/items/{item['id']}", headers=auth)
            assert r.json()["password"] == ITEM_SECRET  # revealed
            request_id = r.headers["x-request-id"]
            me = http.get("/api/v1/me", headers=auth)
            assert me.status_code == 200, me.text
            user_id = me.json()["id"]
            http.post("/api/v1/auth/login", json={"email": "admin@example.com", "password": "wrong-" + PASSWORD})
    finally:
        server.stop()
    raw = log_file.read_text() + (tmp_path / "stdout.log").read_text()
    for secret in (PASSWORD, PIN, ITEM_SECRET, enrollment, ticket, session):
        assert secret not in raw, "a secret reached the log"
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "coffre.access"]
    read = next(line for line in access if line.get("request_id") == request_id)
    assert read["route"] == "/api/v1/items/{item_id}" and read["status"] == 200 and read["method"] == "GET"
    assert isinstance(read["duration_ms"], float) and read["user_id"] == user_id
    assert any(line["route"] == "/api/v1/auth/login" and line["status"] == 401 for line in access)
    assert not any(line["logger"] == "uvicorn.access" for line in lines)
