"""A rotation under load: 16 clients update items through a running node while
the KEK rotates (`coffre keys rotate kek`, another process) and the vault key
rotates (the API, three times). No accepted write is lost; every item reads back
as its last accepted write; every user logs in; the KEK job ends with no failure
and nothing left under the old version."""

from __future__ import annotations

import threading

import pytest

from tests.keyops.helpers import deploy, login

CLIENTS = 16


@pytest.mark.slow
def test_rotations_under_sixteen_writers(tmp_path):
    d = deploy(tmp_path, users=2, items=CLIENTS, sessions=20)
    items = list(d.items)
    accepted: dict[str, str] = {}
    errors: list[str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        item = items[n]
        with d.http() as http:
            headers = login(http, d.users[n % 2])
            count = 0
            while not stop.is_set():
                current = http.get(f"/api/v1/items/{item}", headers=headers)
                if current.status_code != 200:
                    errors.append(f"read {item}: {current.status_code} {current.text[:200]}")
                    return
                count += 1
                value = f"w{n}-{count}"
                r = http.patch(
                    f"/api/v1/items/{item}",
                    json={"version": current.json()["version"], "password": value},
                    headers=headers,
                )
                if r.status_code == 200:
                    accepted[item] = value
                elif r.status_code != 409:  # 409: the item or the vault key changed meanwhile; retried
                    errors.append(f"write {item}: {r.status_code} {r.text[:200]}")
                    return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        kek = d.popen("keys", "rotate", "kek", "--batch", "5", "--json")
        admin = d.headers[d.users[0]]
        with d.http() as http:
            for _ in range(3):
                r = http.post(f"/api/v1/vaults/{d.vault}/rotate", headers=admin)
                assert r.status_code == 200, r.text
        _, err = kek.communicate(timeout=180)
        assert kek.returncode == 0, err
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    try:
        assert not errors, errors[:5]
        assert len(accepted) == CLIENTS, "every client got writes through"
        with d.http() as http:
            headers = login(http, d.users[0])
            for item in items:
                r = http.get(f"/api/v1/items/{item}", headers=headers)
                assert r.status_code == 200 and r.json()["password"] == accepted[item]
        job = next(j for j in d.jobs() if j["kind"] == "kek")
        assert job["state"] == "done" and job["failed"] == 0
        kek_roots = {r["label"]: r for r in d.status()["hsm"]["roots"] if r["kind"] == "kek"}
        assert kek_roots["coffre-kek-v1"]["referenced"] == 0
        vault_jobs = [j for j in d.jobs() if j["kind"] == "vault"]
        assert len(vault_jobs) == 3 and all(j["state"] == "done" for j in vault_jobs)
        d.items = accepted
        d.check_everything_opens()
    finally:
        d.server.stop()
