"""tools/system-deps.sh (the first step of `make install`): silent when everything is
there, and asks apt for exactly the missing Debian packages otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

SCRIPT = REPO / "tools" / "system-deps.sh"


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _run(path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_silent_and_apt_free_when_everything_is_present(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    _stub(bin_dir, "apt-get", f'echo "$*" >> {log}')
    for name in ("softhsm2-util", "curl", "jq", "chromium", "npm"):
        _stub(bin_dir, name, "exit 0")
    _stub(bin_dir, "python3", f'exec {os.path.realpath(sys.executable)} "$@"')  # the system Python
    (bin_dir / "id").symlink_to(shutil.which("id"))
    result = _run(str(bin_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert not log.exists()


def test_installs_exactly_what_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    _stub(bin_dir, "apt-get", f'echo "$*" >> {log}')
    _stub(bin_dir, "python3", "exit 1")  # no venv/ensurepip
    _stub(bin_dir, "curl", "exit 0")  # present
    _stub(bin_dir, "chromium", "exit 0")  # present
    _stub(bin_dir, "npm", "exit 0")  # present
    _stub(bin_dir, "id", "echo 0")  # root: no sudo
    _stub(bin_dir, "env", 'shift; exec "$@"')  # env DEBIAN_FRONTEND=... apt-get ...
    result = _run(str(bin_dir))
    assert result.returncode == 0, result.stderr
    assert "python3-venv softhsm2 jq" in result.stdout
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].split() == ["install", "-y", "-qq", "--no-install-recommends", "python3-venv", "softhsm2", "jq"]


def test_without_root_or_sudo_it_says_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "python3", "exit 1")
    _stub(bin_dir, "id", "echo 1000")
    result = _run(str(bin_dir))
    assert result.returncode == 1
    assert "apt-get install python3-venv softhsm2 curl jq" in result.stderr
