"""Files through the real server in its own processes: kill -9 of the worker
writing an upload (20 times), then gc; the CLI; and (slow) a file over 1 GiB
with the server's peak RSS read from /proc."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import COFFRE, PIN, STRONG_PASSWORD, free_port, init_data_dir, run_cli

TRIALS = 20


class Served:
    def __init__(self, config: Path, log: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "COFFRE_CONFIG": str(config)}
        env.pop("SOFTHSM2_CONF", None)
        self.log = log.open("ab")
        cmd = [COFFRE, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server exited"
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become healthy")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Path, Served, dict[str, str], str]]:
    config = init_data_dir(tmp_path / "data", extra="[files]\nchunk_kib = 64\n")
    server = Served(config, tmp_path / "server.log", workers=2)
    try:
        token = run_cli(config, "user", "invite", "alice@example.com").stdout.strip().splitlines()[-1]
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/api/v1/enroll", json={"token": token, "password": STRONG_PASSWORD, "pin": PIN})
            assert r.status_code == 201, r.text
            ticket = c.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD})
            r = c.post("/api/v1/auth/unlock", json={"login_ticket": ticket.json()["login_ticket"], "pin": PIN})
            headers = {"Authorization": f"Bearer {r.json()['token']}"}
            vault = c.post("/api/v1/vaults", json={"name": "Files"}, headers=headers).json()["id"]
        yield config, server, headers, vault
    finally:
        server.stop()


def _holder_of(part_dir: Path, seen: set[Path]) -> tuple[int, Path] | None:
    """The process with a new ``.part`` file of ``part_dir`` open, and the file."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(str(part_dir)) and target.endswith(".part") and Path(target) not in seen:
                    return int(pid), Path(target)
        except OSError:
            continue
    return None


def test_kill_9_mid_upload_then_gc(deployment: Any, tmp_path: Path) -> None:
    config, server, headers, vault = deployment
    files_dir = config.parent / "files"
    earlier = {}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        for i in range(3):
            body = os.urandom(200_000 + i)
            r = c.post(f"/api/v1/vaults/{vault}/files", params={"name": f"early{i}"}, content=body)
            assert r.status_code == 201
            earlier[r.json()["id"]] = hashlib.sha256(body).hexdigest()
    total, sent_first = 4 * 1024 * 1024, 2 * 1024 * 1024 + 4096
    killed: set[int] = set()
    seen: set[Path] = set()
    for trial in range(TRIALS):
        s = socket.create_connection(("127.0.0.1", server.port))
        request = (
            f"POST /api/v1/vaults/{vault}/files?name=partial{trial} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {total}\r\n\r\n"
        ).encode()
        s.sendall(request + b"P" * sent_first)
        deadline, found = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            found = _holder_of(files_dir / "tmp", seen)
            if found is not None and found[1].exists() and found[1].stat().st_size > 1024 * 1024:
                break
            time.sleep(0.02)
        assert found is not None, f"trial {trial}: no worker is writing"
        os.kill(found[0], signal.SIGKILL)  # the very process writing the blob
        killed.add(found[0])
        seen.add(found[1])
        s.close()
    assert len(killed) == TRIALS
    server.wait_healthy()
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        listed = c.get(f"/api/v1/vaults/{vault}/files").json()
        assert sorted(f["id"] for f in listed) == sorted(earlier)  # nothing partial is visible
        for fid, digest in earlier.items():
            assert hashlib.sha256(c.get(f"/api/v1/files/{fid}/content").content).hexdigest() == digest
    parts = list((files_dir / "tmp").glob("*.part"))
    assert len(parts) == TRIALS
    out = run_cli(config, "files", "gc", "--grace", "0")
    assert out.returncode == 0, out.stderr
    assert f"removed {TRIALS} unfinished upload(s)" in out.stdout
    assert list((files_dir / "tmp").glob("*.part")) == []
    assert len([p for p in (files_dir / "blobs").rglob("*") if p.is_file()]) == len(earlier)
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        for fid, digest in earlier.items():
            assert hashlib.sha256(c.get(f"/api/v1/files/{fid}/content").content).hexdigest() == digest
    # The CLI, as a script uses it: the session token in COFFRE_TOKEN.
    env = {"COFFRE_URL": server.url, "COFFRE_TOKEN": headers["Authorization"].split()[1]}
    source = tmp_path / "Contrat fournisseur.pdf"
    source.write_bytes(os.urandom(150_000))
    put = _cli(env, "file", "put", str(source), "--vault", vault, "--json")
    assert put.returncode == 0, put.stderr
    import json

    fid = json.loads(put.stdout)["id"]
    assert fid in _cli(env, "file", "ls", vault).stdout
    got = _cli(env, "file", "get", fid, "-o", str(tmp_path / "back.pdf"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "back.pdf").read_bytes() == source.read_bytes()
    assert _cli(env, "file", "rm", fid).returncode == 0
    assert _cli(env, "file", "get", fid, "-o", str(tmp_path / "gone")).returncode != 0
    assert not (tmp_path / "gone").exists()
    # KEK rotation re-seals a draft transfer's key and an open deposit box's key; both still work.
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        tid = c.post(
            "/api/v1/transfers", json={"recipients": ["x@example.com"], "password": "kek rotation test"}
        ).json()
        assert c.put(f"/api/v1/transfers/{tid['id']}/files", params={"name": "a"}, content=b"draft").status_code == 201
        box = c.post("/api/v1/deposits", json={"vault_id": vault}).json()
    rotated = run_cli(config, "keys", "rotate", "kek")
    assert rotated.returncode == 0, rotated.stderr
    import sqlite3

    with sqlite3.connect(config.parent / "coffre.db") as db:
        labels = db.execute("select kek_label from transfers union all select kek_label from deposit_boxes").fetchall()
    assert labels == [("coffre-kek-v2",), ("coffre-kek-v2",)]
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        assert c.put(f"/api/v1/transfers/{tid['id']}/files", params={"name": "b"}, content=b"more").status_code == 201
        assert c.post(f"/api/v1/transfers/{tid['id']}/send").status_code == 200
        token = box["url"].rsplit("/d/", 1)[1]
        put = c.put(f"/api/v1/public/deposits/{token}/files", params={"name": "d"}, content=b"deposit")
        assert put.status_code == 201, put.text
    # The access log never shows a public link's token or a download token.
    password = "log redaction test"
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        t2 = c.post("/api/v1/transfers", json={"recipients": ["y@example.com"], "password": password}).json()
        c.put(f"/api/v1/transfers/{t2['id']}/files", params={"name": "a"}, content=b"x")
        sent = c.post(f"/api/v1/transfers/{t2['id']}/send").json()
    link_token = sent["links"][0]["url"].rsplit("/t/", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get(f"/t/{link_token}").status_code == 200
        opened = c.post(f"/api/v1/public/transfers/{link_token}/unlock", json={"password": password}).json()
        fid = opened["files"][0]["id"]
        got = c.get(
            f"/api/v1/public/transfers/{link_token}/files/{fid}", params={"download_token": opened["download_token"]}
        )
        assert got.status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert "/api/v1/public/transfers/…/files/" in log  # the lines are there, redacted
    for secret in (link_token, opened["download_token"], token):
        assert secret not in log


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run([COFFRE, *args], capture_output=True, text=True, env=full, timeout=120, check=False)


def _rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


@pytest.mark.slow
def test_large_file_constant_memory(tmp_path: Path) -> None:
    """> 1 GiB up and down through HTTP (default 1 MiB chunks); the server's peak
    RSS (VmHWM) grows by less than 64 MB over its warmed-up value."""
    config = init_data_dir(tmp_path / "data")
    server = Served(config, tmp_path / "server.log", workers=1)
    try:
        token = run_cli(config, "user", "invite", "big@example.com").stdout.strip().splitlines()[-1]
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(120.0)) as c:
            assert c.post("/api/v1/enroll", json={"token": token, "password": STRONG_PASSWORD, "pin": PIN}).is_success
            ticket = c.post("/api/v1/auth/login", json={"email": "big@example.com", "password": STRONG_PASSWORD})
            r = c.post("/api/v1/auth/unlock", json={"login_ticket": ticket.json()["login_ticket"], "pin": PIN})
            c.headers["Authorization"] = f"Bearer {r.json()['token']}"
            vault = c.post("/api/v1/vaults", json={"name": "Big"}).json()["id"]
            warm = c.post(f"/api/v1/vaults/{vault}/files", params={"name": "warm"}, content=os.urandom(8 << 20))
            assert c.get(f"/api/v1/files/{warm.json()['id']}/content").status_code == 200
            base = _rss(server.proc.pid)["VmHWM"]
            size = (1 << 30) + 12345
            block = os.urandom(1 << 20)
            digest = hashlib.sha256()

            def body() -> Iterator[bytes]:
                left = size
                while left:
                    piece = block[: min(left, len(block))]
                    digest.update(piece)
                    left -= len(piece)
                    yield piece

            r = c.post(
                f"/api/v1/vaults/{vault}/files",
                params={"name": "big.bin"},
                content=body(),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 201, r.text
            assert r.json()["sha256"] == digest.hexdigest() and r.json()["size"] == size
            back = hashlib.sha256()
            got = 0
            with c.stream("GET", f"/api/v1/files/{r.json()['id']}/content") as resp:
                assert resp.status_code == 200
                for piece in resp.iter_bytes(1 << 20):
                    back.update(piece)
                    got += len(piece)
            assert got == size and back.hexdigest() == digest.hexdigest()
            growth = _rss(server.proc.pid)["VmHWM"] - base
            assert growth < 64 * 1024 * 1024, f"peak RSS grew by {growth / 1e6:.1f} MB"
            print(f"peak RSS growth over a {size / 1e9:.2f} GB upload + download: {growth / 1e6:.1f} MB")
    finally:
        server.stop()
