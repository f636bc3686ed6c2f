"""What the provisioning tests must leave exactly as they found it on the host.

A snapshot lists, for every path the playbook would write on a real converge,
each file's type, mode, owner and SHA-256 (symlink targets for links); the
processes a converge starts (Apache, Coffre, the test PostgreSQL cluster) in
the host's own PID namespace; the host's TCP listeners on the tests' ports; and
whether the firewall table is loaded on the host.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

WATCHED = (
    "/etc/coffre",
    "/var/lib/coffre",
    "/etc/apache2",
    "/etc/ssl/coffre",
    "/opt/coffre",
    "/var/log/coffre",
    "/usr/local/sbin",
    "/usr/local/libexec/coffre",
    "/etc/systemd/system",
    "/etc/nftables.d",
    "/etc/postgresql",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/run/coffre",
    "/run/apache2",
)
PORTS = (8443, 8081, 18080, 55432)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def tree(root: Path) -> dict[str, str]:
    """path -> "type mode uid:gid sha256-or-target" for root and everything under it."""
    out: dict[str, str] = {}
    if not root.exists() and not root.is_symlink():
        return {str(root): "absent"}
    stack = [root]
    while stack:
        path = stack.pop()
        st = path.lstat()
        head = f"{stat.S_IFMT(st.st_mode):o} {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}"
        if stat.S_ISLNK(st.st_mode):
            out[str(path)] = f"{head} -> {os.readlink(path)}"
        elif stat.S_ISREG(st.st_mode):
            out[str(path)] = f"{head} {_digest(path)}"
        else:
            out[str(path)] = head
            if stat.S_ISDIR(st.st_mode):
                stack.extend(sorted(path.iterdir()))
    return out


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def provisioned_processes() -> list[str]:
    """Apache, Coffre and test-cluster processes in this PID namespace (not in any sandbox)."""
    own = os.readlink("/proc/self/ns/pid")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != own:
                continue
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        cmd = _cmdline(entry.name)
        if comm in {"apache2", "httpd"} or "/opt/coffre/" in cmd or "coffre-supervise" in cmd or "coffretest" in cmd:
            found.append(f"{comm}: {cmd.strip()}")
    return sorted(found)


def listeners() -> list[int]:
    """The tests' ports that something listens on in this network namespace."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in PORTS:
                    found.add(port)
    return sorted(found)


def firewall_loaded() -> bool:
    try:
        proc = subprocess.run(["nft", "list", "table", "inet", "coffre"], capture_output=True, check=False, timeout=30)
    except FileNotFoundError:
        return False
    return proc.returncode == 0


def snapshot(extra: tuple[Path, ...] = ()) -> dict[str, object]:
    files: dict[str, str] = {}
    for root in (*map(Path, WATCHED), *extra):
        files.update(tree(root))
    return {
        "files": files,
        "processes": provisioned_processes(),
        "listeners": listeners(),
        "firewall_loaded": firewall_loaded(),
    }


def differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    out = []
    fb, fa = before["files"], after["files"]
    assert isinstance(fb, dict) and isinstance(fa, dict)
    for path in sorted(set(fb) | set(fa)):
        if fb.get(path) != fa.get(path):
            out.append(f"{path}: {fb.get(path, 'absent')} -> {fa.get(path, 'absent')}")
    for key in ("processes", "listeners", "firewall_loaded"):
        if before[key] != after[key]:
            out.append(f"{key}: {before[key]} -> {after[key]}")
    return out
