"""The converge happened in the sandbox, not on this host (runs last).

The session's `host_baseline` fixture compares the host again once the sandbox
is gone and fails the session on any difference; these tests check the same
while the sandbox still runs Apache and Coffre, and that the isolation is real.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.provisioning import host_state
from tests.provisioning.conftest import Converge, HostBaseline
from tests.provisioning.sandbox import Sandbox
from tests.provisioning.support import HTTPS_PORT, LAB_SECRETS


def test_host_unchanged_while_the_sandbox_runs(
    host_baseline: HostBaseline, sandbox: Sandbox, converged: Converge
) -> None:
    assert sandbox.path("/etc/coffre/coffre.toml").exists(), "the sandbox was not converged"
    changed = host_state.differences(host_baseline.before, host_state.snapshot((LAB_SECRETS,)))
    assert not changed, "the host changed:\n" + "\n".join(changed)


def test_sandbox_processes_are_not_the_hosts(sandbox: Sandbox, converged: Converge) -> None:
    """Apache runs in the sandbox's PID and network namespaces (the host-side
    process list, compared above, leaves those out)."""
    comms = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in sandbox.processes()}
    assert "apache2" in comms, comms
    assert os.readlink(f"/proc/{sandbox.pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_sandbox_apache_is_not_on_the_hosts_loopback(sandbox: Sandbox, converged: Converge) -> None:
    with sandbox.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10):
        pass
    if HTTPS_PORT in host_state.listeners():
        pytest.skip(f"something of the host's own listens on {HTTPS_PORT}")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=10)


def test_a_write_inside_stays_inside(sandbox: Sandbox, converged: Converge) -> None:
    canary = f"/etc/coffre/sandbox-canary-{os.getpid()}"
    made = sandbox.run(["sh", "-c", f"echo canary > {canary}"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert sandbox.path(canary).read_text() == "canary\n"
    assert not Path(canary).exists()
    sandbox.run(["rm", "-f", canary])


def test_snapshot_sees_content_mode_and_new_files(tmp_path: Path) -> None:
    """The comparison the session relies on notices each kind of change."""
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    f.write_text("one")
    before = host_state.tree(tmp_path)
    assert host_state.tree(tmp_path) == before
    f.write_text("two")
    assert host_state.tree(tmp_path) != before
    f.write_text("one")
    f.chmod(0o600)
    assert host_state.tree(tmp_path) != before
    f.chmod(stat_mode(before[str(f)]))
    assert host_state.tree(tmp_path) == before
    (tmp_path / "d" / "new").write_text("")
    assert host_state.tree(tmp_path) != before
    assert host_state.tree(tmp_path / "absent") == {str(tmp_path / "absent"): "absent"}


def stat_mode(entry: str) -> int:
    return int(entry.split()[1], 8)
