"""Folder benchmarks (issue 8): listing a vault of 1,000 items spread over 50
folders with per-member overrides (target p50 <= 100 ms server time), and the
rotation of a 1,000-item folder's key (target <= 2 s).

In-process (the Litestar app through its test client, so the figures are server
time without the network), SoftHSM2 token and SQLite in a temporary data dir,
production RSA size. Run alone: `.venv/bin/python -m bench.folders`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "bench passphrase that is long enough 42"
PIN = "735028"
ITEMS, FOLDERS, ROTATED = 1000, 50, 1000


def _user(client: Any, app: Any, email: str) -> dict[str, str]:
    token = app.accounts.invite(email, False)[1]
    r = client.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r = client.post("/api/v1/auth/unlock", json={"login_ticket": r.json()["login_ticket"], "pin": PIN})
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _timed(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    from litestar.testing import TestClient

    from appliance import config as config_mod
    from appliance.core import Appliance
    from web.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="coffre-bench-folders-"))
    try:
        coffre = str(Path(sys.executable).with_name("coffre"))
        subprocess.run([coffre, "init", "--data-dir", str(tmp)], check=True, capture_output=True, timeout=300)
        settings = config_mod.load(tmp / "coffre.toml")
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf or ""
        app = Appliance(settings)
        with TestClient(create_app(app)) as client:
            owner = _user(client, app, "owner@bench.example")
            members = [_user(client, app, f"m{i}@bench.example") for i in range(3)]
            ids = [client.get("/api/v1/me", headers=h).json()["id"] for h in members]
            vault = client.post("/api/v1/vaults", json={"name": "bench"}, headers=owner).json()["id"]
            for i in range(3):
                client.post(
                    f"/api/v1/vaults/{vault}/members",
                    json={"email": f"m{i}@bench.example", "role": "write" if i else "read"},
                    headers=owner,
                )
            folders = []
            for f in range(FOLDERS):
                parent = folders[f // 5 - 1] if f >= 10 and f % 5 else None
                r = client.post(
                    f"/api/v1/vaults/{vault}/folders", json={"name": f"folder {f}", "parent_id": parent}, headers=owner
                )
                folders.append(r.json()["id"])
            for i in range(ITEMS):
                body = {
                    "title": f"item {i}",
                    "username": f"user{i}",
                    "password": f"pw-{i}",
                    "folder_id": folders[i % FOLDERS],
                }
                assert client.post(f"/api/v1/vaults/{vault}/items", json=body, headers=owner).status_code == 201
            # Overrides: member 1 none on 5 folders, member 2 read on 5, member 0 full on 5.
            for f in range(0, 15):
                who, access = [(ids[1], "none"), (ids[2], "read"), (ids[0], "full")][f % 3]
                r = client.put(f"/api/v1/folders/{folders[f]}/access/{who}", json={"access": access}, headers=owner)
                assert r.status_code == 200, r.text
            results: dict[str, list[float]] = {}
            for name, headers in (("admin", owner), ("restricted member", members[1])):
                listing = lambda h=headers: client.get(f"/api/v1/vaults/{vault}/items", headers=h)  # noqa: E731
                seen = len(listing().json())
                results[f"list 1,000 items / 50 folders as {name} ({seen} visible)"] = _timed(listing, 30)

            big = client.post(f"/api/v1/vaults/{vault}/folders", json={"name": "big"}, headers=owner).json()["id"]
            for i in range(ROTATED):
                body = {"title": f"big {i}", "password": f"big-{i}", "folder_id": big}
                client.post(f"/api/v1/vaults/{vault}/items", json=body, headers=owner)
            client.put(f"/api/v1/folders/{big}/access/{ids[1]}", json={"access": "none"}, headers=owner)
            rotations = []
            for user_id in (ids[2], ids[0]):
                start = time.perf_counter()
                r = client.put(f"/api/v1/folders/{big}/access/{user_id}", json={"access": "none"}, headers=owner)
                rotations.append((time.perf_counter() - start) * 1000)
                assert r.status_code == 200, r.text
            results[f"rotate the key of a {ROTATED}-item folder (set a reader to none)"] = rotations
        app.close()
        print(f"{'benchmark':70} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
        for name, values in results.items():
            values = sorted(values)
            p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
            print(f"{name:70} {statistics.median(values):9.1f} {p95:9.1f} {values[-1]:9.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
