"""`python -m bench.files`: files through HTTP on loopback (no TLS), against `dd`
to the same disk as the reference. A 2 GiB upload and download (MB/s, the server's
peak RSS growth), item-read latency idle and during the download, and 8 concurrent
100 MB uploads. Temporary data dir (SoftHSM2, SQLite, filesystem store)."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.run import PASSWORD, PIN, _coffre

SIZE = int(os.environ.get("COFFRE_BENCH_FILE_BYTES", str(2 << 30)))
CONCURRENT, CONCURRENT_SIZE = 8, 100_000_000
BLOCK = os.urandom(1 << 20)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _Sampler(threading.Thread):
    """The server's RSS every 20 ms (VmHWM would include the login's 64 MiB Argon2id peak)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, _rss(self.pid))


def _body(size: int, digest: hashlib._Hash | None = None) -> Iterator[bytes]:
    left = size
    while left:
        piece = BLOCK[: min(left, len(BLOCK))]
        if digest is not None:
            digest.update(piece)
        left -= len(piece)
        yield piece


def _dd(tmp: Path) -> tuple[float, float]:
    target = tmp / "dd.bin"
    count = SIZE >> 20
    out = subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}", "conv=fdatasync"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    write = SIZE / float(out.strip().splitlines()[-1].split(" s,")[0].split(", ")[-1]) / 1e6
    out = subprocess.run(
        ["dd", f"if={target}", "of=/dev/null", "bs=1M"], capture_output=True, text=True, check=True
    ).stderr
    read = SIZE / float(out.strip().splitlines()[-1].split(" s,")[0].split(", ")[-1]) / 1e6
    target.unlink()
    return write, read


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 100 else max(samples)


def main(tmp: Path) -> int:
    data = tmp / "data"
    enrollment = _coffre(tmp / "none.toml", "init", "--data-dir", str(data), "--admin-email", "b@example.com")
    config = data / "coffre.toml"
    dd_write, dd_read = _dd(tmp)
    port = 19000 + os.getpid() % 1000
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "coffre"), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        http = httpx.Client(base_url=base, timeout=httpx.Timeout(600.0))
        token = enrollment.strip().splitlines()[-1]
        http.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN}).raise_for_status()
        ticket = http.post("/api/v1/auth/login", json={"email": "b@example.com", "password": PASSWORD}).json()
        session = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket["login_ticket"], "pin": PIN}).json()
        http.headers["Authorization"] = f"Bearer {session['token']}"
        vault = http.post("/api/v1/vaults", json={"name": "bench"}).json()["id"]
        item = http.post(f"/api/v1/vaults/{vault}/items", json={"title": "db", "password": "p" * 24}).json()["id"]
        warm = http.post(f"/api/v1/vaults/{vault}/files", params={"name": "warm"}, content=BLOCK * 8).json()
        http.get(f"/api/v1/files/{warm['id']}/content").raise_for_status()
        idle = []
        for _ in range(300):
            t0 = time.perf_counter()
            http.get(f"/api/v1/items/{item}").raise_for_status()
            idle.append((time.perf_counter() - t0) * 1000)
        base_rss = _rss(server.pid)
        sampler = _Sampler(server.pid)
        sampler.start()

        digest = hashlib.sha256()
        t0 = time.perf_counter()
        up = http.post(
            f"/api/v1/vaults/{vault}/files",
            params={"name": "big.bin"},
            content=_body(SIZE, digest),
            headers={"Content-Length": str(SIZE), "Content-Type": "application/octet-stream"},
        )
        upload_s = time.perf_counter() - t0
        up.raise_for_status()
        assert up.json()["sha256"] == digest.hexdigest()

        during: list[float] = []
        stop = threading.Event()

        def reads() -> None:
            with httpx.Client(base_url=base, headers=dict(http.headers), timeout=60) as c:
                while not stop.is_set():
                    t = time.perf_counter()
                    c.get(f"/api/v1/items/{item}").raise_for_status()
                    during.append((time.perf_counter() - t) * 1000)

        reader = threading.Thread(target=reads)
        back = hashlib.sha256()
        t0 = time.perf_counter()
        reader.start()
        with http.stream("GET", f"/api/v1/files/{up.json()['id']}/content") as r:
            for piece in r.iter_bytes(1 << 20):
                back.update(piece)
        download_s = time.perf_counter() - t0
        stop.set()
        reader.join()
        assert back.hexdigest() == digest.hexdigest()
        sampler.done.set()
        sampler.join()
        growth = sampler.peak - base_rss

        errors: list[str] = []

        def one(i: int) -> None:
            with httpx.Client(base_url=base, headers=dict(http.headers), timeout=600) as c:
                r = c.post(
                    f"/api/v1/vaults/{vault}/files",
                    params={"name": f"c{i}"},
                    content=_body(CONCURRENT_SIZE),
                    headers={"Content-Length": str(CONCURRENT_SIZE)},
                )
                if r.status_code != 201:
                    errors.append(f"{r.status_code} {r.text[:100]}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent_s = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    mb = SIZE / 1e6
    print(f"machine: {os.cpu_count()} cores; data dir {data}; file {SIZE / 2**30:.2f} GiB, 1 MiB chunks, SQLite")
    print("| measure | value | reference |")
    print("| --- | --- | --- |")
    print(f"| upload through HTTP | {mb / upload_s:,.0f} MB/s | dd write (fdatasync) {dd_write:,.0f} MB/s |")
    print(f"| download through HTTP | {mb / download_s:,.0f} MB/s | dd read {dd_read:,.0f} MB/s (page cache) |")
    print(f"| server peak RSS growth (upload + download) | {growth / 1e6:.1f} MB | target ≤ 64 MB |")
    print(f"| item read p99, idle | {_p99(idle):.1f} ms | |")
    print(f"| item read p99, during the download | {_p99(during):.1f} ms ({len(during)} reads) | target ≤ 2x idle |")
    total = CONCURRENT * CONCURRENT_SIZE / 1e6
    print(
        f"| {CONCURRENT} concurrent {CONCURRENT_SIZE // 1_000_000} MB uploads | {total / concurrent_s:,.0f} MB/s "
        f"aggregate, {len(errors)} errors | |"
    )
    return 1 if errors else 0


def run() -> int:
    with tempfile.TemporaryDirectory(dir=os.environ.get("COFFRE_BENCH_DIR")) as tmp:
        return main(Path(tmp))


if __name__ == "__main__":
    sys.exit(run())
