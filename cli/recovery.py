"""``coffre recovery init|status|request|rotate`` (appliance/recovery)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any


def _emails(value: str | None) -> list[str] | None:
    return [e.strip() for e in value.split(",") if e.strip()] if value else None


def _read_shares(count: int) -> list[str]:
    """Each officer types their share (not echoed on a terminal; one per line otherwise)."""
    shares = []
    for i in range(count):
        if sys.stdin.isatty():
            shares.append(getpass.getpass(f"share {i + 1} of {count} (the officer types it): "))
        else:
            line = sys.stdin.readline()
            if not line:
                break
            shares.append(line.strip())
    return shares


def _print_status(status: Any, as_json: bool) -> None:
    data = {
        "enabled": status.enabled,
        "version": status.version,
        "threshold": status.threshold,
        "officers": list(status.officers),
        "pending_pickups": list(status.pending_pickups),
        "escrowed_users": status.escrowed,
        "active_users": status.users,
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    if not status.enabled:
        print("recovery: not enabled (coffre recovery init --officers A,B,C --threshold 2)")
        return
    print(f"recovery: enabled (version {status.version}), threshold {status.threshold} of {len(status.officers)}")
    print("officers: " + ", ".join(status.officers))
    print("shares not picked up yet: " + (", ".join(status.pending_pickups) or "none"))
    print(f"escrow coverage: {status.escrowed} of {status.users} active users (the others at their next unlock)")


def cmd_recovery(args: argparse.Namespace, app: Any) -> int:
    if args.recovery_cmd == "init":
        status = app.recovery.init(_emails(args.officers) or [], args.threshold)
        print(f"recovery enabled: threshold {status.threshold} of {len(status.officers)} officers")
        print("each officer now picks up their share, once, in their own session")
        print("(web UI: My account > Recovery share; API: POST /api/v1/recovery/my-share)")
    elif args.recovery_cmd == "status":
        _print_status(app.recovery.status(), args.json)
    elif args.recovery_cmd == "request":
        request_id, token = app.recovery_requests.open(None, args.email)
        print(f"recovery request {request_id} for {args.email}: officers approve with their shares within 24 h;")
        print("give the user this password-reset token (they set a new password and PIN with it):")
        print(token)
    else:
        with app.keystore.work() as work, app.db.read() as db:
            threshold = app.recovery.require_config(db, work).threshold
        shares = _read_shares(threshold)
        status = app.recovery_rotate(shares, _emails(args.officers), args.threshold)
        print(f"recovery rotated (version {status.version}): threshold {status.threshold} of {len(status.officers)}")
        print("each officer picks up their new share, once; the old shares open nothing any more")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("recovery", parents=[common], help="M-of-N recovery by officers")
    rsub = p.add_subparsers(dest="recovery_cmd", required=True)
    q = rsub.add_parser("init", parents=[common], help="the set-up ceremony: recovery key pair and officers' shares")
    q.add_argument("--officers", required=True, help="comma-separated e-mail addresses of enrolled users")
    q.add_argument("--threshold", type=int, required=True, help="how many officers recover (at least 2)")
    q = rsub.add_parser("status", parents=[common], help="officers, threshold, pickups, escrow coverage")
    q.add_argument("--json", action="store_true")
    q = rsub.add_parser("request", parents=[common], help="open a recovery for a user; prints their reset token last")
    q.add_argument("email")
    q = rsub.add_parser("rotate", parents=[common], help="with M officers present: a new key pair and new shares")
    q.add_argument("--officers", default=None, help="the new officers (default: the same)")
    q.add_argument("--threshold", type=int, default=None, help="the new threshold (default: the same)")
    return p
