"""`coffre serve` forwards its audit log to a real TCP syslog receiver: nothing is
lost across a receiver restart and a Coffre restart; anchors appear; the CLI
exports, verifies from an entry and reports the forwarding lag."""

from __future__ import annotations

import json
import time

import httpx

from tests.auditops.syslog import SyslogReceiver, parse_cef, parse_rfc5424
from tests.support import Server, free_port, init_data_dir, run_cli


def _fail_logins(server: Server, n: int) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(n):
            r = http.post("/api/v1/auth/login", json={"email": f"nobody{i}@example.com", "password": "wrong-password"})
            assert r.status_code in (401, 429), r.text


def _head(config) -> int:
    result = run_cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["audit"]["head_seq"])


def test_no_entry_lost_across_receiver_and_coffre_restarts(tmp_path):
    port = free_port()
    config = init_data_dir(tmp_path / "data")
    with config.open("a") as f:
        f.write(f'\n[audit]\nforward = "syslog+tcp://127.0.0.1:{port}"\nanchor_interval_seconds = 2\n')
    receiver = SyslogReceiver(port).start()
    server = Server(config, tmp_path / "serve.log").start()
    try:
        _fail_logins(server, 5)
        receiver.wait_for(set(range(1, _head(config) + 1)))
        receiver.stop()  # the SIEM goes down; requests go on, unslowed
        started = time.monotonic()
        _fail_logins(server, 5)
        assert time.monotonic() - started < 10
        server.stop()  # and Coffre restarts while entries are still unsent
        status = json.loads(run_cli(config, "status", "--json").stdout)["audit"]["forward"]
        assert status["lag_entries"] > 0 and status["destination"] == f"syslog+tcp://127.0.0.1:{port}"
        shown = run_cli(config, "status").stdout
        assert "forwarding lag" in shown and "last error" in shown
        server.start()
        _fail_logins(server, 3)
        receiver.start()
        time.sleep(2.5)  # an anchor becomes due
        _fail_logins(server, 2)
        receiver.wait_for(set(range(1, _head(config) + 1)), timeout=60)
        deadline = time.monotonic() + 30
        while json.loads(run_cli(config, "status", "--json").stdout)["audit"]["forward"]["lag_entries"]:
            assert time.monotonic() < deadline, "the forwarding cursor did not catch up"
            time.sleep(0.5)
    finally:
        server.stop()
        receiver.stop()
    parsed = [parse_rfc5424(m)["sd"]["coffre@32473"] for m in receiver.messages]
    by_seq = {int(p["seq"]): p for p in parsed}
    head = _head(config)
    assert set(by_seq) == set(range(1, head + 1))
    for seq in range(2, head + 1):  # the chain a SIEM can check without the HSM
        assert by_seq[seq]["prevMac"] == by_seq[seq - 1]["mac"]
    assert any(p["event"] == "audit.anchor" for p in parsed)

    # The CLI: export (each format parsed back), verify --since with a rate.
    exported = run_cli(config, "audit", "export", "--format", "jsonl", "--since", "3")
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["seq"] for r in lines] == list(range(3, head + 1))
    assert all(r["mac"] == by_seq[r["seq"]]["mac"] for r in lines)
    cef = run_cli(config, "audit", "export", "--format", "cef").stdout.splitlines()
    assert [int(parse_cef(line)[1]["externalId"]) for line in cef] == list(range(1, head + 1))
    syslog = run_cli(config, "audit", "export", "--format", "rfc5424", "--since", str(head)).stdout.splitlines()
    assert len(syslog) == 1 and parse_rfc5424(syslog[0])["sd"]["coffre@32473"]["seq"] == str(head)
    verified = run_cli(config, "audit", "verify", "--since", "4")
    assert verified.returncode == 0, verified.stderr
    assert f"{head - 3} entries" in verified.stdout and "entries/s" in verified.stdout
    assert run_cli(config, "audit", "verify", "--since", str(head + 5)).returncode == 1


def test_export_follow_writes_new_entries(tmp_path):
    import os
    import select
    import subprocess

    from tests.support import COFFRE

    config = init_data_dir(tmp_path / "data")
    env = {**os.environ, "COFFRE_CONFIG": str(config)}
    env.pop("SOFTHSM2_CONF", None)
    proc = subprocess.Popen(
        [COFFRE, "audit", "export", "--format", "jsonl", "--follow"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:

        def next_record(timeout: float = 30) -> dict:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            assert ready, "no line from --follow"
            return json.loads(proc.stdout.readline())

        first = next_record()
        assert first["seq"] == 1 and first["event"] == "audit.genesis"
        assert run_cli(config, "user", "invite", "someone@example.com").returncode == 0
        later = next_record()
        assert later["seq"] == 2 and later["prev_mac"] == first["mac"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
