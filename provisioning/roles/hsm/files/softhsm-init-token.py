#!/usr/bin/env python3
# Installed by the Coffre provisioning hsm role.
"""Initialise a SoftHSM2 token without putting a PIN on any command line.

softhsm2-util only reads PINs from a terminal, so this helper runs it under a
pseudo-terminal and answers its prompts with PINs read from its own stdin:
line 1 = SO PIN, line 2 = user PIN. Usage:
    softhsm-init-token.py LABEL < pins
Exit status is softhsm2-util's. Nothing secret is ever printed.
"""
import os
import pty
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: softhsm-init-token.py LABEL < pins", file=sys.stderr)
        return 2
    lines = sys.stdin.read().splitlines()
    if len(lines) < 2 or not lines[0] or not lines[1]:
        print("softhsm-init-token: expected SO PIN and user PIN on stdin", file=sys.stderr)
        return 2
    so_pin, user_pin = lines[0], lines[1]
    argv = ["softhsm2-util", "--init-token", "--free", "--label", sys.argv[1]]
    pid, fd = pty.fork()
    if pid == 0:  # child: softhsm2-util on the pty
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    buf = b""
    transcript = []
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: child closed the pty
            break
        if not chunk:
            break
        buf += chunk
        # Answer each prompt once; never echo the answer into our output.
        while b"PIN:" in buf:
            head, _, buf = buf.partition(b"PIN:")
            transcript.append(head.decode(errors="replace"))
            pin = so_pin if b"SO PIN" in head[-40:] else user_pin
            os.write(fd, pin.encode() + b"\n")
    transcript.append(buf.decode(errors="replace"))
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    # Keep only softhsm2-util's informative lines (no PIN is ever in them,
    # the pty echo is off while it reads a PIN).
    for line in "".join(transcript).splitlines():
        line = line.strip()
        if line and "PIN" not in line and not line.startswith("Please"):
            print(line)
    return rc


if __name__ == "__main__":
    sys.exit(main())
