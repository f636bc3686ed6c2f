"""PID 1 of a provisioning sandbox (run by tests/provisioning/sandbox.py).

Started by ``unshare --mount --net --pid --ipc --uts --fork`` as root, so it is
already alone in fresh mount, network, PID, IPC and UTS namespaces. It then:

- lays a copy-on-write overlay over every writable real filesystem of the host
  (``/`` and any other disk or tmpfs mounted under it), all upper layers on one
  scratch ext4 (a sparse image in the work directory, loop-mounted with
  autoclear; tmpfs where loop devices are missing, which cannot hold ext4 file
  attributes): whatever the playbook writes lands there and goes with the sandbox;
- gives the sandbox its own /proc (its PID namespace), /sys, /dev/shm and /run
  (so pid files, sockets and "is systemd running" are the sandbox's own);
- brings up loopback in the empty network namespace (no other interface: the
  sandbox can reach nothing outside it, and nothing outside can reach it);
- chroots into the overlay, says "ready", and reaps orphans until it is killed.

When it dies the kernel kills every process of the sandbox's PID namespace, and
the mounts and the tmpfs go away with the last of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PSEUDO_PREFIXES = ("/proc", "/sys", "/dev", "/run")


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")


def _host_mounts(workdir: Path) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of the writable real filesystems under / to
    overlay, parents first (read-only ones are left out of the sandbox)."""
    seen: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        target, options = _unescape(fields[4]), fields[5].split(",")
        fstype = right.split()[0]
        if "ro" in options:
            continue  # nothing can be written there anyway
        if target == "/" or any(target == p or target.startswith(p + "/") for p in PSEUDO_PREFIXES):
            continue
        if target == str(workdir) or target.startswith(str(workdir) + "/"):
            continue
        if fstype in {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "autofs", "binfmt_misc"}:
            continue
        seen[target] = fstype
    return sorted(seen.items(), key=lambda item: item[0].count("/"))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _overlay(lower: str, target: str, layer: Path, index: int) -> None:
    upper, work = layer / f"u{index}", layer / f"w{index}"
    upper.mkdir()
    work.mkdir()
    _mount("-t", "overlay", "coffre-sandbox", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", target)


def setup(workdir: Path) -> Path:
    layer, root = workdir / "layer", workdir / "root"
    layer.mkdir(exist_ok=True)
    root.mkdir(exist_ok=True)
    image = workdir / "layer.img"
    with image.open("wb") as f:
        f.truncate(16 << 30)  # sparse: only what is written takes room
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-L", "coffre-sandbox", str(image)],
        capture_output=True,
        check=False,
    )
    try:
        if made.returncode != 0:
            raise subprocess.CalledProcessError(made.returncode, "mkfs.ext4")
        _mount("-o", "loop", str(image), str(layer))
    except subprocess.CalledProcessError:
        image.unlink()
        _mount("-t", "tmpfs", "-o", "mode=0700", "coffre-sandbox", str(layer))
    os.chmod(layer, 0o700)
    _overlay("/", str(root), layer, 0)
    for index, (target, _fstype) in enumerate(_host_mounts(workdir), start=1):
        inside = f"{root}{target}"
        if not os.path.isdir(inside):
            continue
        try:
            _overlay(target, inside, layer, index)
        except subprocess.CalledProcessError:
            # A filesystem overlayfs cannot sit on: show it read-only.
            _mount("--rbind", "-o", "ro", target, inside)
    _mount("-t", "proc", "proc", f"{root}/proc")
    try:
        _mount("-t", "sysfs", "-o", "ro", "sysfs", f"{root}/sys")
    except subprocess.CalledProcessError:
        _mount("--rbind", "-o", "ro", "/sys", f"{root}/sys")
    _mount("--rbind", "/dev", f"{root}/dev")
    _mount("-t", "tmpfs", "-o", "mode=1777", "shm", f"{root}/dev/shm")
    _mount("-t", "tmpfs", "-o", "mode=0755", "run", f"{root}/run")
    (root / "run" / "lock").mkdir(mode=0o1777)
    os.chmod(root / "run" / "lock", 0o1777)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return root


def reap_forever() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.2)


def main() -> None:
    if os.getpid() != 1:
        sys.exit("sandbox_init must run as PID 1 of a new PID namespace")
    root = setup(Path(sys.argv[1]))
    os.chroot(root)
    os.chdir("/")
    print("ready", flush=True)
    os.close(1)
    os.open(os.devnull, os.O_WRONLY)
    reap_forever()


if __name__ == "__main__":
    main()
