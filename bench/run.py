"""`make bench`: the read path's physical limit in the token, HTTP throughput and
latency of an item read next to a trivial authenticated endpoint, and login cost.

Not a test: it prints one table and the ratios. Everything runs on loopback in a
temporary data dir (SoftHSM2 token, SQLite) with production crypto settings.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

DURATION = float(os.environ.get("COFFRE_BENCH_SECONDS", "5"))
CONCURRENCY = (1, 8, 32)
WORKERS = int(os.environ.get("COFFRE_BENCH_WORKERS", "1"))
PASSWORD = "bench passphrase that is long enough 42"
PIN = "735028"  # one the PIN policy accepts


def _rate(fn: Callable[[], Any], seconds: float = 1.5) -> float:
    fn()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        count += 1
    return count / elapsed


def raw_token_rates(config: Path) -> dict[str, float]:
    """(a) The token's own rate for each PKCS#11 operation of the read path."""
    from appliance import config as config_mod
    from hsm.keystore import Keystore
    from hsm.labels import RootKind

    settings = config_mod.load(config)
    os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf or ""
    ks = Keystore(settings.hsm)
    rates: dict[str, float] = {}
    with ks.work() as work:
        pin_key = os.urandom(32)
        public, blob = work.generate_user_keypair(settings.crypto.rsa_bits, pin_key, b"bench")
        private = work.open_private_key(blob, b"bench", pin_key)
        data_key = work.new_data_key()
        wrapped = work.wrap_for_public_key(data_key, public)
        field = work.encrypt_field(data_key, b"x" * 64, b"aad")
        sealed = work.seal(b"y" * 1300, b"ctx")

        def unwrap_vault_key() -> None:
            work.keep(work.unwrap_with_private_key(private, wrapped)).destroy()

        def unwrap_private() -> None:
            work.keep(work.open_private_key(blob, b"bench", pin_key)).destroy()
            work.destroy_temporaries()

        rates["AES-GCM decrypt 64 B (item field)"] = _rate(lambda: work.decrypt_field(data_key, field, b"aad"))
        rates["HMAC-SHA256 (audit entry)"] = _rate(lambda: work.mac(RootKind.AUDIT, b"z" * 200))
        rates["AES-GCM unseal 1.3 kB (KEK)"] = _rate(lambda: work.unseal(sealed, b"ctx"))
        rates[f"RSA-{settings.crypto.rsa_bits} OAEP unwrap (vault key)"] = _rate(unwrap_vault_key)
        rates["open private key (KEK unseal + GCM + KWP unwrap under ukw)"] = _rate(unwrap_private)
        from hsm import state

        counters = state.read_counters(work, "bench-anchor", 1024)
        state.write_counters(work, "bench-anchor", counters)
        rates["anchor table read (1,024 counters, every request)"] = _rate(
            lambda: state.read_counters(work, "bench-anchor", 1024)
        )

        def advance() -> None:
            counters[0] += 1
            state.write_counters(work, "bench-anchor", counters)

        rates["anchor table write (a change of an access row)"] = _rate(advance)
        state.destroy_counters(work, "bench-anchor")
        work.destroy_temporaries()
    ks.close()
    return rates


async def _load(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                r = await client.get(url, headers=headers)
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p50, p99, errors


def _load_ab(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[float, float, float, int]:
    """The same load with ApacheBench (a C client: the load generator then takes
    far less of the 2 cores than a Python one would)."""
    cmd = ["ab", "-q", "-k", "-t", str(seconds), "-n", "1000000", "-c", str(concurrency)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests per second:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"\s50%\s+([0-9]+)", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"\s99%\s+([0-9]+)", out).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+([0-9]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx responses:\s+([0-9]+)", out)
    return rps, p50, p99, failed + (int(non2xx.group(1)) if non2xx else 0)


def load(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[float, float, float, int]:
    if shutil.which("ab"):
        return _load_ab(url, headers, concurrency, seconds)
    return asyncio.run(_load(url, headers, concurrency, seconds))


def _coffre(config: Path, *args: str) -> str:
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    bin_dir = Path(sys.executable).parent
    out = subprocess.run([str(bin_dir / "coffre"), *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout


def main(tmp: Path) -> int:
    data = tmp / "data"
    token = _coffre(tmp / "none.toml", "init", "--data-dir", str(data), "--admin-email", "bench@example.com")
    enrollment = token.strip().splitlines()[-1]
    config = data / "coffre.toml"
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"data dir: {data} (SoftHSM2, SQLite WAL); durations {DURATION:g} s per point\n")

    rates = raw_token_rates(config)

    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "coffre"), "serve", "--port", str(port), "--workers", str(WORKERS)],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as http:
            assert (
                http.post("/api/v1/enroll", json={"token": enrollment, "password": PASSWORD, "pin": PIN}).status_code
                == 201
            )
            login_ms, unlock_ms = [], []
            for _ in range(10):
                t0 = time.perf_counter()
                ticket = http.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD})
                t1 = time.perf_counter()
                r = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket.json()["login_ticket"], "pin": PIN})
                t2 = time.perf_counter()
                login_ms.append((t1 - t0) * 1000)
                unlock_ms.append((t2 - t1) * 1000)
            headers = {"Authorization": f"Bearer {r.json()['token']}"}
            vault = http.post("/api/v1/vaults", json={"name": "bench"}, headers=headers).json()
            item = http.post(
                f"/api/v1/vaults/{vault['id']}/items",
                json={"title": "db", "username": "root", "password": "p" * 24, "url": "https://x", "notes": "n" * 64},
                headers=headers,
            ).json()
        rows = []
        for c in CONCURRENCY:
            trivial = load(base + "/api/v1/ping", headers, c, DURATION)
            read = load(base + f"/api/v1/items/{item['id']}", headers, c, DURATION)
            rows.append((c, trivial, read))
    finally:
        server.terminate()
        server.wait(timeout=15)

    print("(a) raw SoftHSM2 rate per operation, python-pkcs11, one process, one thread")
    for name, rate in rates.items():
        print(f"    {name:<45} {rate:>10,.0f} /s")
    # A cached item read does 5 field decrypts and 1 HMAC in the token.
    read_cost = 5 / rates["AES-GCM decrypt 64 B (item field)"] + 1 / rates["HMAC-SHA256 (audit entry)"]
    physical = 1 / read_cost
    print(f"    => token limit for one item read (5 GCM + 1 HMAC), one core: {physical:,.0f} /s\n")
    client = "ApacheBench (ab -k)" if shutil.which("ab") else "Python httpx (install apache2-utils for ab)"
    print(f"(b) HTTP on loopback, `coffre serve --workers {WORKERS}`, keep-alive load from {client}, same machine")
    print(
        f"    {'clients':>7} | {'trivial req/s':>13} {'p50 ms':>7} {'p99 ms':>7} | {'item read req/s':>15} "
        f"{'p50 ms':>7} {'p99 ms':>7} | {'read/trivial':>12} {'read/(a)':>8} | errors"
    )
    for c, (t_rps, t50, t99, t_err), (r_rps, r50, r99, r_err) in rows:
        print(
            f"    {c:>7} | {t_rps:>13,.0f} {t50:>7.1f} {t99:>7.1f} | {r_rps:>15,.0f} {r50:>7.1f} {r99:>7.1f} | "
            f"{r_rps / t_rps:>11.0%} {r_rps / physical:>8.1%} | {t_err + r_err}"
        )
    print("\n(c) login latency (ms), 10 sequential logins")
    print(f"    password step (pepper HMAC + Argon2id): p50 {statistics.median(login_ms):.0f}, max {max(login_ms):.0f}")
    print(
        f"    PIN step (Argon2id + unwrap/re-wrap in token): p50 {statistics.median(unlock_ms):.0f}, "
        f"max {max(unlock_ms):.0f}"
    )
    eight = next(r for r in rows if r[0] == 8)
    ok = eight[2][0] >= 0.5 * eight[1][0] and eight[2][2] <= 25
    print(f"\ntarget at 8 clients (read >= 50% of trivial, p99 <= 25 ms): {'met' if ok else 'NOT met'}")
    return 0


def run() -> int:
    """``main`` in a throw-away directory that is removed afterwards (it holds a
    token and its PIN file); COFFRE_BENCH_KEEP=1 keeps it for a look."""
    tmp = Path(tempfile.mkdtemp(prefix="coffre-bench-"))
    try:
        return main(tmp)
    finally:
        if os.environ.get("COFFRE_BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
