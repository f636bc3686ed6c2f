"""An isolated root for the provisioning tests.

The playbook, the services it starts (Apache, Coffre, a PostgreSQL cluster) and
every probe that runs a command live in a sandbox made by sandbox_init.py: new
mount, network, PID, IPC and UTS namespaces, the host's filesystems behind a
copy-on-write overlay whose upper layer is a scratch filesystem in the work
directory, and a network with only loopback. The host is read, never written: the sandbox's files are reached
from outside through ``/proc/<init>/root``, its loopback through a socket
opened inside its network namespace, and closing it kills every process in it
and drops the overlay.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

INIT = Path(__file__).resolve().parent / "sandbox_init.py"
NAMESPACES = ("--mount", "--net", "--pid", "--ipc", "--uts")
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # unshare blocks SIGTERM while it waits


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Sandbox:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "init.log"
        with self.log.open("wb") as log:
            # --kill-child: when unshare goes, so does the sandbox's PID 1 (and with
            # it every process inside); PDEATHSIG: unshare goes when pytest does,
            # even if pytest is killed outright.
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    *NAMESPACES,
                    "--fork",
                    "--propagation",
                    "private",
                    "--kill-child",
                    "/usr/bin/python3",
                    str(INIT),
                    str(workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"the sandbox did not start:\n{self.log.read_text()}")
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        self.pid = int(children[0])
        self.netns = f"/proc/{self.pid}/ns/net"
        self.pidns = os.readlink(f"/proc/{self.pid}/ns/pid")

    # --- reaching inside -------------------------------------------------------

    def path(self, inside: str | os.PathLike[str]) -> Path:
        """The host's view of a path inside the sandbox (read it, never write it)."""
        return Path(f"/proc/{self.pid}/root{os.fspath(inside)}")

    def run(
        self, argv: Sequence[str], *, cwd: str | os.PathLike[str] = "/", **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run a command inside the sandbox (its files, network and processes)."""
        cmd = ["nsenter", f"--target={self.pid}", *NAMESPACES, "--root", "--",
               "env", "-C", os.fspath(cwd), *argv]  # fmt: skip
        kwargs.setdefault("check", False)
        return subprocess.run(cmd, **kwargs)

    @contextmanager
    def network(self) -> Iterator[None]:
        """Sockets created in this block belong to the sandbox's network."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.netns, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)

    def create_connection(
        self, address: tuple[str, int], timeout: float | None = None, source_address: Any = None
    ) -> socket.socket:
        """socket.create_connection, to an address on the sandbox's loopback."""
        with self.network():
            return socket.create_connection(address, timeout=timeout, source_address=source_address)

    # --- what the sandbox holds -------------------------------------------------

    def processes(self) -> list[int]:
        """Host PIDs of the processes inside the sandbox."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "pid") == self.pidns:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def loop_devices(self) -> list[str]:
        """Loop devices still backed by the sandbox's scratch image."""
        image = str(self.workdir / "layer.img")
        found = []
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            try:
                if backing.read_text().strip().startswith(image):
                    found.append(backing.parent.parent.name)
            except OSError:
                continue
        return found

    def close(self) -> None:
        """Kill everything inside; the mounts and the scratch filesystem go with
        the last process (the loop device detaches itself)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # unshare then exits with its child
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (self.processes() or self.loop_devices()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left, loops = self.processes(), self.loop_devices()
        for name in ("root", "layer"):
            try:
                (self.workdir / name).rmdir()
            except OSError:
                pass
        (self.workdir / "layer.img").unlink(missing_ok=True)
        if left or loops:
            raise RuntimeError(f"sandbox not gone: processes {left}, loop devices {loops}")
