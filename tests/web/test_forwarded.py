"""Whose X-Forwarded-For Coffre believes, against real `coffre serve` processes.

By default nobody's: a local process on the loopback port cannot pick the
address the per-address login limit counts or the audit log records. With
``trusted_proxies = ["unix"]`` the header is believed only on requests that came
in over the Unix socket (the provisioned Apache's path), never over TCP.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.support import COFFRE, Server, init_data_dir

LIMIT = 3


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short path: a Unix socket's path must fit in 108 bytes.
    data = tmp_path_factory.mktemp("fwd") / "d"
    init_data_dir(data, extra=f"\n[security]\naddress_attempts = {LIMIT}\n")
    return data


def _config(data_dir: Path, name: str, trusted: str) -> Path:
    text = (data_dir / "coffre.toml").read_text()
    assert "trusted_proxies = []" in text, "coffre init must trust no proxy by default"
    path = data_dir / name
    path.write_text(text.replace("trusted_proxies = []", f"trusted_proxies = {trusted}"))
    os.chmod(path, 0o600)
    return path


class UnixServer:
    """`coffre serve --unix-socket` in its own process."""

    def __init__(self, config: Path, sock: Path, log: Path) -> None:
        env = {**os.environ, "COFFRE_CONFIG": str(config)}
        env.pop("SOFTHSM2_CONF", None)
        self.sock = sock
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [COFFRE, "serve", "--unix-socket", str(sock)], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self.log = log
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if self.client().get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sock)), base_url="http://coffre", timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def _failed_login(client: httpx.Client, forwarded_for: str) -> int:
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"  # a new account each time: only the address limit bites
    r = client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": "not the password at all"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return r.status_code


def _audited_addrs(data_dir: Path, since_seq: int = 0) -> list[str | None]:
    with closing(sqlite3.connect(data_dir / "coffre.db", timeout=10)) as conn:
        rows = conn.execute(
            "SELECT client_addr FROM audit_log WHERE event = 'login.failed' AND seq > ? ORDER BY seq", (since_seq,)
        ).fetchall()
    return [r[0] for r in rows]


def _last_seq(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / "coffre.db", timeout=10)) as conn:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()[0])


@pytest.fixture
def fresh_limits(data_dir: Path) -> Iterator[None]:
    """Each test starts with no login attempts counted."""
    with closing(sqlite3.connect(data_dir / "coffre.db", timeout=10)) as conn:
        conn.execute("DELETE FROM rate_limit_hits")
        conn.commit()
    yield


def test_loopback_peer_forwarded_for_is_ignored_by_default(data_dir: Path, fresh_limits: None, tmp_path: Path) -> None:
    server = Server(data_dir / "coffre.toml", tmp_path / "tcp.log").start()
    start = _last_seq(data_dir)
    try:
        with server.client() as client:
            statuses = [_failed_login(client, f"203.0.113.{i}") for i in range(1, LIMIT + 2)]
    finally:
        server.stop()
    # Each request claimed another address; the limit still counted them as one.
    assert statuses[:LIMIT] == [401] * LIMIT, statuses
    assert statuses[LIMIT] == 429, statuses
    addrs = _audited_addrs(data_dir, start)
    assert addrs == ["127.0.0.1"] * LIMIT, addrs


def test_unix_socket_is_0660_and_forwarded_for_believed_when_trusted(
    data_dir: Path, fresh_limits: None, tmp_path: Path
) -> None:
    config = _config(data_dir, "unix.toml", '["unix"]')
    sock = data_dir / "s.sock"
    server = UnixServer(config, sock, tmp_path / "unix.log")
    start = _last_seq(data_dir)
    try:
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        with server.client() as client:
            statuses = [_failed_login(client, f"198.51.100.{i}") for i in range(1, LIMIT + 2)]
    finally:
        server.stop()
    assert not sock.exists(), "the socket is removed when the server stops"
    # Apache's header names a different client each time: each has its own count.
    assert statuses == [401] * (LIMIT + 1), statuses
    assert _audited_addrs(data_dir, start) == [f"198.51.100.{i}" for i in range(1, LIMIT + 2)]


def test_unix_trust_does_not_extend_to_tcp_peers(data_dir: Path, fresh_limits: None, tmp_path: Path) -> None:
    config = _config(data_dir, "unix-tcp.toml", '["unix"]')
    server = Server(config, tmp_path / "tcp.log").start()
    start = _last_seq(data_dir)
    try:
        with server.client() as client:
            statuses = [_failed_login(client, f"192.0.2.{i}") for i in range(1, LIMIT + 2)]
    finally:
        server.stop()
    assert statuses[LIMIT] == 429, statuses
    assert _audited_addrs(data_dir, start) == ["127.0.0.1"] * LIMIT


def test_unix_socket_peer_untrusted_by_default(data_dir: Path, fresh_limits: None, tmp_path: Path) -> None:
    sock = data_dir / "d.sock"
    server = UnixServer(data_dir / "coffre.toml", sock, tmp_path / "unix.log")
    start = _last_seq(data_dir)
    try:
        with server.client() as client:
            statuses = [_failed_login(client, f"198.51.100.{i}") for i in range(1, LIMIT + 2)]
    finally:
        server.stop()
    assert statuses[LIMIT] == 429, statuses
    assert _audited_addrs(data_dir, start) == ["unix"] * LIMIT


def test_stale_socket_is_replaced_and_a_live_one_refused(data_dir: Path, tmp_path: Path) -> None:
    import socket

    sock = data_dir / "st.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # a socket file nobody listens on, as a crash leaves it
    server = UnixServer(data_dir / "coffre.toml", sock, tmp_path / "a.log")
    try:
        env = {**os.environ, "COFFRE_CONFIG": str(data_dir / "coffre.toml")}
        env.pop("SOFTHSM2_CONF", None)
        second = subprocess.run(
            [COFFRE, "serve", "--unix-socket", str(sock)], capture_output=True, text=True, env=env, timeout=60
        )
        assert second.returncode == 3, second.stderr
        assert "another server is listening" in second.stderr
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()
