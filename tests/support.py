"""Helpers for tests: a fake clock, users, logins, subprocess servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from appliance.core import Appliance

REPO = Path(__file__).resolve().parent.parent
COFFRE = str(Path(sys.executable).parent / "coffre")
STRONG_PASSWORD = "correct horse battery staple 42"
PIN = "480213"
POSTGRES_URL = os.environ.get("COFFRE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class FakeClock:
    """Injected time: tests move it forward instead of sleeping."""

    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def postgres_url_or_reason() -> tuple[str | None, str]:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return POSTGRES_URL, ""
    except Exception as exc:
        return None, f"no PostgreSQL answers at {POSTGRES_URL} ({type(exc).__name__}); PostgreSQL cases skipped"


def invite(app: Appliance, email: str, admin: bool = False) -> str:
    return app.accounts.invite(email, admin)[1]


def enroll(client: Any, token: str, password: str = STRONG_PASSWORD, pin: str = PIN) -> Any:
    return client.post("/api/v1/enroll", json={"token": token, "password": password, "pin": pin})


def login(client: Any, email: str, password: str = STRONG_PASSWORD, pin: str = PIN) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/auth/unlock", json={"login_ticket": r.json()["login_ticket"], "pin": pin})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def new_user(
    client: Any, app: Appliance, email: str, admin: bool = False, password: str = STRONG_PASSWORD, pin: str = PIN
) -> dict[str, str]:
    r = enroll(client, invite(app, email, admin), password, pin)
    assert r.status_code == 201, r.text
    return login(client, email, password, pin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FAST_CRYPTO = "[crypto]\nrsa_bits = 2048\nargon2_time_cost = 1\nargon2_memory_kib = 1024\n"


def init_data_dir(data_dir: Path, database_url: str | None = None, extra: str = "") -> Path:
    """`coffre init` in a subprocess, then fast crypto parameters for tests."""
    cmd = [COFFRE, "init", "--data-dir", str(data_dir), "--rsa-bits", "2048"]
    if database_url:
        cmd += ["--database-url", database_url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    config = data_dir / "coffre.toml"
    text = config.read_text().replace("[crypto]\nrsa_bits = 2048\n", FAST_CRYPTO + extra)
    # Nodes re-read the newest root label every second (rotation jobs wait that long).
    text = text.replace("\n[hsm]\n", "\n[hsm]\nroot_ttl_seconds = 1\n", 1)
    config.write_text(text)
    return config


def run_cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    return subprocess.run([COFFRE, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


class Server:
    """`coffre serve` in its own process, on a free loopback port."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_healthy: bool = True) -> Server:
        env = {**os.environ, "COFFRE_CONFIG": str(self.config), **self.env}
        env.pop("SOFTHSM2_CONF", None)
        self._log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [COFFRE, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                r = httpx.get(self.url + "/healthz", timeout=2)
                if not wait_healthy or r.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if hasattr(self, "_log"):
            self._log.close()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


class TcpRelay:
    """A loopback TCP relay in front of a real server, which a test can cut and
    restore to simulate the database going away."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self._threading = threading
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpRelay:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self._threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                except OSError:
                    pass
            self._conns = []
