"""Helpers for the provisioning tests: run the lab playbook in a sandbox.

The tests converge an isolated root (tests/provisioning/sandbox.py: the host's
files behind a copy-on-write overlay kept in memory, its own network, PIDs and
/run), never this host, with the lab inventory plus test-vars.yml, which moves
Apache to ports of its own (8443/8081). Coffre listens only on its Unix socket.
They need root, Debian, unshare/nsenter and overlayfs; the tools come from
provisioning/ci-deps.sh (apt packages, provisioning/.venv with the pinned
ansible-core, ansible-lint and sslyze, and provisioning/.wheelhouse: the sandbox
has no network, so Coffre is installed from there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.provisioning.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "provisioning"
TOOLS = PROVISIONING / ".venv" / "bin"
LAB_INVENTORY = PROVISIONING / "inventories" / "lab" / "hosts.yml"
SITE = PROVISIONING / "site.yml"
TEST_VARS = Path(__file__).resolve().parent / "test-vars.yml"
WHEELHOUSE = PROVISIONING / ".wheelhouse"

# Paths are inside the sandbox (read them through Sandbox.path). Must match test-vars.yml.
SERVER_NAME = "localhost"
HTTPS_PORT = 8443
HTTP_PORT = 8081
APP_PORT = 18080  # where Coffre would listen over TCP: nothing must
APP_SOCKET = Path("/run/coffre/coffre.sock")
LAB_CA = Path("/etc/coffre/pki/ca.crt")
SERVER_CERT = Path("/etc/ssl/coffre/server.crt")
UNIT_PATH = Path("/etc/systemd/system/coffre.service")
RULESET_PATH = Path("/etc/nftables.d/coffre.nft")
ADMIN = Path("/usr/local/sbin/coffre-admin")
LAB_SECRETS = Path(os.environ.get("COFFRE_LAB_SECRETS", str(Path.home() / ".coffre-lab")))

PLAYBOOK_TIMEOUT = 900


def unsupported_reason() -> str | None:
    """Why this machine cannot run the provisioning tests, or None."""
    if os.geteuid() != 0:
        return "provisioning tests converge a sandboxed root and need root (CI runs them as root)"
    if not Path("/etc/debian_version").exists():
        return "provisioning tests need a Debian host"
    if not (TOOLS / "ansible-playbook").exists() or not (WHEELHOUSE / ".stamp").exists():
        return "provisioning tools missing: run provisioning/ci-deps.sh (make test-provisioning does)"
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return "unshare and nsenter (util-linux) are needed for the sandbox"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (modprobe overlay) for the sandbox"
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


def run_playbook(sandbox: Sandbox, *args: str, extra_vars: dict[str, object] | None = None) -> PlaybookRun:
    """Run the lab playbook inside the sandbox; Coffre is installed from the wheelhouse."""
    offline = {"appliance_pip_extra_args": ["--no-index", "--find-links", str(WHEELHOUSE)]}
    cmd = [str(TOOLS / "ansible-playbook"), "-i", str(LAB_INVENTORY), "-e", f"@{TEST_VARS}"]
    cmd += ["-e", json.dumps({**offline, **(extra_vars or {})})]
    cmd += [*args, str(SITE)]
    proc = sandbox.run(
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


def sandbox_ls(sandbox: Sandbox, path: str | Path) -> tuple[int, str, str]:
    """(mode, owner, group) of a path inside the sandbox, names from its own passwd/group."""
    st = sandbox.path(path).stat()
    return stat.S_IMODE(st.st_mode), sandbox_user(sandbox, st.st_uid), sandbox_group(sandbox, st.st_gid)


def _names(sandbox: Sandbox, db: str) -> dict[int, str]:
    names = {}
    for line in sandbox.path(db).read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 3:
            names[int(fields[2])] = fields[0]
    return names


def sandbox_user(sandbox: Sandbox, uid: int) -> str:
    return _names(sandbox, "/etc/passwd").get(uid, str(uid))


def sandbox_group(sandbox: Sandbox, gid: int) -> str:
    return _names(sandbox, "/etc/group").get(gid, str(gid))


def sandbox_sql(sandbox: Sandbox, db: str, sql: str) -> list[list[object]]:
    """Rows of a read-only query on an SQLite file inside the sandbox. It runs in
    there: SQLite resolves the /proc/<pid>/root symlink to the host's own root."""
    script = (
        "import json, sqlite3, sys\n"
        "conn = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True, timeout=10)\n"
        "print(json.dumps(conn.execute(sys.argv[2]).fetchall()))\n"
    )
    proc = sandbox.run(["/usr/bin/python3", "-c", script, db, sql], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows: list[list[object]] = json.loads(proc.stdout)
    return rows


def group_members(sandbox: Sandbox, group: str) -> set[str]:
    for line in sandbox.path("/etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return {m for m in fields[3].split(",") if m}
    return set()
