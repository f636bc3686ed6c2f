"""`make bench` (rotation): the KEK rotation job's rate next to the token's raw
unseal+seal pair rate, measured in the same run, and the time to rotate 100,000
sealed private keys.

A bench deployment (`coffre init`, production crypto settings, SQLite) gets one
real enrolled-format private key blob; its KEK layer is opened once and the inner
layers re-sealed under the KEK for each of N synthetic users (each with its own
associated data, as real rows have), inserted in bulk. Then:

1. raw: a loop of ``unseal`` + ``seal`` on those blobs in one token session, no
   database: the physical limit of re-sealing;
2. job: ``coffre keys rotate kek`` as the appliance runs it (batches, parallel
   token sessions up to the pool, compare-and-swap per row, a commit per batch),
   timed for its pass over every row, then in total with the settle wait
   (``hsm.root_ttl_seconds``, 30 s by default) and the final sweep.

3. item-read latency at 8 concurrent clients through `coffre serve`, idle and while
   a second KEK rotation job (another process) passes over the N keys.

``COFFRE_BENCH_KEYS`` sets N (default 100000).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = int(os.environ.get("COFFRE_BENCH_KEYS", "100000"))
RAW_SECONDS = 3.0


def _init(tmp: Path) -> Path:
    coffre = str(Path(sys.executable).parent / "coffre")
    subprocess.run([coffre, "init", "--data-dir", str(tmp)], check=True, capture_output=True, text=True)
    return tmp / "coffre.toml"


def _populate(app: object, n: int) -> list[tuple[str, bytes]]:
    from sqlalchemy import insert

    from appliance.models import User
    from appliance.sessions import user_key_context

    blobs: list[tuple[str, bytes]] = []
    with app.keystore.work() as work:  # type: ignore[attr-defined]
        rsa_bits = app.settings.crypto.rsa_bits  # type: ignore[attr-defined]
        _, blob = work.generate_user_keypair(rsa_bits, os.urandom(32), user_key_context("u" + "0" * 31))
        middle = work.unseal(blob, user_key_context("u" + "0" * 31))
        label = work.sealed_under(blob)
        now = time.time()
        rows = []
        for i in range(n):
            user_id = f"b{i:031d}"
            sealed = work.seal(middle, user_key_context(user_id))
            blobs.append((user_id, sealed))
            rows.append(
                {
                    "id": user_id,
                    "email": f"bench{i}@example.com",
                    "is_admin": False,
                    "status": "active",
                    "locked": False,
                    "failed_pin_count": 0,
                    "pin_failures_since_success": 0,
                    "created_at": now,
                    "key_generation": 1,
                    "key_rotation_due": False,
                    "private_key_blob": sealed,
                    "kek_label": label,
                }
            )
            if len(rows) == 5000:
                with app.db.write() as db:  # type: ignore[attr-defined]
                    db.execute(insert(User), rows)
                rows = []
        if rows:
            with app.db.write() as db:  # type: ignore[attr-defined]
                db.execute(insert(User), rows)
    return blobs


def _raw_rate(app: object, blobs: list[tuple[str, bytes]]) -> tuple[float, int]:
    from appliance.sessions import user_key_context

    done, start = 0, time.perf_counter()
    with app.keystore.work() as work:  # type: ignore[attr-defined]
        while time.perf_counter() - start < RAW_SECONDS:
            user_id, blob = blobs[done % len(blobs)]
            context = user_key_context(user_id)
            work.seal(work.unseal(blob, context), context)
            done += 1
    return done / (time.perf_counter() - start), len(blob)


def main(tmp: Path) -> int:
    from appliance import config as config_mod
    from appliance.core import Appliance
    from appliance.keyops import JobView, Options

    config = _init(tmp)
    settings = config_mod.load(config)
    os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf or ""
    app = Appliance(settings)
    try:
        t0 = time.perf_counter()
        blobs = _populate(app, KEYS)
        print(f"bench deployment: {KEYS} sealed private keys inserted in {time.perf_counter() - t0:.1f} s")
        raw, size = _raw_rate(app, blobs)
        del blobs
        marks: dict[str, float] = {}

        def progress(view: JobView) -> None:
            if view.phase == "pass":
                marks.setdefault("pass_start", time.perf_counter())
                marks["pass_end"] = time.perf_counter()

        start = time.perf_counter()
        # As fast as it goes (no pause between batches): the job's rate against the raw rate.
        view = app.keyops.start("kek", "bench", Options(progress=progress, pause=0.0))
        total = time.perf_counter() - start
        pass_seconds = marks.get("pass_end", time.perf_counter()) - marks.get("pass_start", start)
        job_rate = view.done / pass_seconds if pass_seconds > 0 else 0.0
        print()
        print(f"{'measure':<52} {'value':>12}")
        print(f"{'raw token unseal+seal pairs/s (1 session, ' + str(size) + ' B blobs)':<52} {raw:>12.0f}")
        print(f"{'rotation job rows/s (pass, DB writes incl., no pause)':<52} {job_rate:>12.0f}")
        print(f"{'job rate / raw rate':<52} {job_rate / raw:>11.0%}")
        print(f"{'rows moved / failed':<52} {f'{view.done} / {view.failed}':>12}")
        print(f"{'pass over ' + str(KEYS) + ' keys (s)':<52} {pass_seconds:>12.1f}")
        settle = settings.hsm.root_ttl_seconds + 1
        print(f"{'job total incl. settle wait ' + f'{settle:.0f} s' + ' and final sweep (s)':<52} {total:>12.1f}")
        print(f"{'token pool size (parallel sessions)':<52} {settings.hsm.pool_size:>12}")
        print(f"{'cores':<52} {os.cpu_count():>12}")
        ok = view.state == "done" and view.failed == 0
    finally:
        app.close()
    idle, during = _reads_during_rotation(config, tmp)
    print(f"{'item read p99 ms, 8 clients, idle':<52} {idle[2]:>12.1f}")
    for pause, (measured, seconds) in during.items():
        print(f"{f'item read p99 ms during a rotation, --pause-ms {pause}':<52} {measured[2]:>12.1f}")
        print(f"{f'  item reads/s idle / during, --pause-ms {pause}':<52} {f'{idle[0]:.0f} / {measured[0]:.0f}':>12}")
        print(
            f"{f'  p99 during / idle (target <= 2x), --pause-ms {pause}':<52} {measured[2] / max(idle[2], 0.1):>11.1f}x"
        )
        print(f"{f'  that job, start to done (s), --pause-ms {pause}':<52} {seconds:>12.1f}")
    return 0 if ok else 1


def _reads_during_rotation(
    config: Path, tmp: Path
) -> tuple[tuple[float, float, float, int], dict[str, tuple[tuple[float, float, float, int], float]]]:
    import httpx

    from bench.run import PASSWORD, PIN, _coffre, load

    coffre = str(Path(sys.executable).parent / "coffre")
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    token = _coffre(config, "user", "invite", "reader@example.com").strip().splitlines()[-1]
    port = 19000 + os.getpid() % 1000
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen([coffre, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as http:
            http.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN}).raise_for_status()
            ticket = http.post("/api/v1/auth/login", json={"email": "reader@example.com", "password": PASSWORD})
            r = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket.json()["login_ticket"], "pin": PIN})
            headers = {"Authorization": f"Bearer {r.json()['token']}"}
            vault = http.post("/api/v1/vaults", json={"name": "bench"}, headers=headers).json()
            item = http.post(
                f"/api/v1/vaults/{vault['id']}/items", json={"title": "db", "password": "p" * 24}, headers=headers
            ).json()
        url = base + f"/api/v1/items/{item['id']}"
        idle = load(url, headers, 8, 4.0)
        during = {}
        for pause in ("2", "20"):
            t0 = time.perf_counter()
            job = subprocess.Popen(
                [coffre, "keys", "rotate", "kek", "--json", "--pause-ms", pause],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)  # start-up, then the pass over the keys
            measured = load(url, headers, 8, 4.0)
            job.communicate(timeout=600)
            during[pause] = (measured, time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait(timeout=15)
    return idle, during


def run() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="coffre-bench-rotation-"))
    try:
        return main(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
