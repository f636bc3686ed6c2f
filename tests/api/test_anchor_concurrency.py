"""Anchors under concurrency, on SQLite and PostgreSQL: logins, logouts, reads and
role changes racing in one bucket space never make a genuine row fail its check
(the check retries under the domain lock when a counter moved before its commit),
and nothing deadlocks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from litestar.testing import TestClient
from sqlalchemy import func, select

from appliance.models import AuditEntry, User
from tests.conftest import build_app, dismantle
from tests.support import login, new_user
from web.app import create_app

USERS = 6
ROUNDS = 4


def test_logins_logouts_reads_and_role_changes_race_without_false_failures(database_url, hsm_config, tmp_path, clock):
    # Every login comes from the one test client's address: lift the per-address limit.
    app = build_app(database_url, hsm_config, tmp_path, clock, address_attempts=10_000, account_attempts=10_000)
    try:
        with TestClient(create_app(app)) as client:
            _race(client, app)
    finally:
        dismantle(app)


def _race(client, app) -> None:
    admin = new_user(client, app, "admin@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "race"}, headers=admin).json()["id"]
    item = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "p"}, headers=admin)
    item = item.json()["id"]
    emails = [f"u{i}@example.com" for i in range(USERS)]
    for email in emails:
        new_user(client, app, email)
        r = client.post(f"/api/v1/vaults/{vault}/members", json={"email": email, "role": "read"}, headers=admin)
        assert r.status_code == 201
    with app.db.read() as db:
        ids = {u.email: u.id for u in db.execute(select(User)).scalars()}
    bystander = login(client, "admin@example.com")

    def member(email: str) -> list[int]:
        codes = []
        for _ in range(ROUNDS):
            headers = login(client, email)
            codes.append(client.get(f"/api/v1/items/{item}", headers=headers).status_code)
            codes.append(client.post("/api/v1/auth/logout", headers=headers).status_code)
        return codes

    def roles() -> list[int]:
        codes = []
        for round_ in range(ROUNDS * 2):
            role = "write" if round_ % 2 == 0 else "read"
            for email in emails[:3]:
                r = client.patch(f"/api/v1/vaults/{vault}/members/{ids[email]}", json={"role": role}, headers=admin)
                codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(max_workers=USERS + 1) as pool:
        futures = [pool.submit(member, e) for e in emails] + [pool.submit(roles)]
        codes = [c for f in futures for c in f.result(timeout=300)]
    assert set(codes) <= {200, 204}, sorted(set(codes))
    with app.db.read() as db:
        failures = db.execute(select(func.count()).where(AuditEntry.event == "integrity.failed")).scalar_one()
    assert failures == 0
    assert client.get(f"/api/v1/items/{item}", headers=bystander).status_code == 200
    assert app.integrity.scan() == {}
