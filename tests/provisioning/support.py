"""Helpers for the provisioning tests: run the lab playbook on this machine.

The tests converge *this* host with the lab inventory plus test-vars.yml, which
moves every listener to loopback and to ports of its own (Apache 8443/8081,
Coffre 18080). They need root and Debian; the tools come from
provisioning/ci-deps.sh (apt packages, and provisioning/.venv with the pinned
ansible-core, ansible-lint and sslyze).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "provisioning"
TOOLS = PROVISIONING / ".venv" / "bin"
LAB_INVENTORY = PROVISIONING / "inventories" / "lab" / "hosts.yml"
SITE = PROVISIONING / "site.yml"
TEST_VARS = Path(__file__).resolve().parent / "test-vars.yml"

# Must match test-vars.yml.
SERVER_NAME = "localhost"
HTTPS_PORT = 8443
HTTP_PORT = 8081
APP_PORT = 18080
LAB_CA = Path("/etc/coffre/pki/ca.crt")
SERVER_CERT = Path("/etc/ssl/coffre/server.crt")
UNIT_PATH = Path("/etc/systemd/system/coffre.service")
RULESET_PATH = Path("/etc/nftables.d/coffre.nft")
SERVICE_CTL = Path("/usr/local/sbin/coffre-service")
ADMIN = Path("/usr/local/sbin/coffre-admin")
LAB_SECRETS = Path(os.environ.get("COFFRE_LAB_SECRETS", str(Path.home() / ".coffre-lab")))

PLAYBOOK_TIMEOUT = 900


def unsupported_reason() -> str | None:
    """Why this machine cannot run the provisioning tests, or None."""
    if os.geteuid() != 0:
        return "provisioning tests converge this host and need root (CI runs them as root)"
    if not Path("/etc/debian_version").exists():
        return "provisioning tests need a Debian host"
    if not (TOOLS / "ansible-playbook").exists():
        return "provisioning tools missing: run provisioning/ci-deps.sh (make test-provisioning does)"
    return None


def ansible_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_STDOUT_CALLBACK="default",
        PATH=f"{TOOLS}:{env.get('PATH', '/usr/bin:/bin')}:/usr/local/sbin:/usr/sbin:/sbin",
    )
    return env


@dataclass
class PlaybookRun:
    rc: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        match = re.search(r"^localhost\s*:\s*(.*)$", self.output, re.MULTILINE)
        if not match:
            return {}
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def changed_tasks(self) -> list[str]:
        tasks, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line.rstrip("* ")
            elif line.startswith("changed:"):
                tasks.append(current)
        return tasks

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_playbook(*args: str, extra_vars: dict[str, object] | None = None) -> PlaybookRun:
    import json

    cmd = [str(TOOLS / "ansible-playbook"), "-i", str(LAB_INVENTORY), "-e", f"@{TEST_VARS}"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += [*args, str(SITE)]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=ansible_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=PLAYBOOK_TIMEOUT,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout)


def snapshot_checkout(dest: Path) -> Path:
    """Copy the checkout's buildable files, so both runs install the same tree
    even while someone edits the working copy."""
    subprocess.run(
        [
            "rsync",
            "-a",
            "--delete",
            "--exclude=.git/",
            "--exclude=.venv/",
            "--exclude=provisioning/",
            "--exclude=tests/",
            "--exclude=__pycache__/",
            "--exclude=*.egg-info/",
            "--exclude=build/",
            "--exclude=dist/",
            "--exclude=data/",
            f"{REPO}/",
            f"{dest}/",
        ],
        check=True,
    )
    return dest


def stop_everything() -> None:
    """Stop what the playbook started (Coffre and Apache), whatever the mode."""
    systemd = Path("/run/systemd/system").is_dir()
    if SERVICE_CTL.exists():
        subprocess.run([str(SERVICE_CTL), "stop"], check=False, capture_output=True, timeout=60)
    if systemd and shutil.which("systemctl"):
        subprocess.run(["systemctl", "stop", "coffre", "apache2"], check=False, capture_output=True, timeout=60)
    if shutil.which("apache2ctl"):
        subprocess.run(["apache2ctl", "stop"], check=False, capture_output=True, timeout=60)
