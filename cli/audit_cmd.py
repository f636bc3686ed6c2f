"""`coffre audit verify|export`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
FOLLOW_POLL_SECONDS = 1.0


def add_parsers(sub: Any, common: argparse.ArgumentParser, func: Any) -> None:
    p = sub.add_parser("audit", parents=[common], help="audit trail")
    asub = p.add_subparsers(dest="audit_cmd", required=True)
    q = asub.add_parser(
        "verify", parents=[common], help="verify the HMAC chain; non-zero exit names the first bad entry"
    )
    q.add_argument("--head", help="a head MAC recorded earlier (e.g. in the SIEM): it must still be in the log")
    q.add_argument(
        "--since", type=_seq, default=1, metavar="SEQ", help="verify from entry SEQ (its MAC checked first) to the head"
    )
    q = asub.add_parser("export", parents=[common], help="write entries (with their MACs) for a SIEM")
    q.add_argument("--format", choices=["jsonl", "cef", "rfc5424"], default="jsonl")
    q.add_argument("--since", type=_seq, default=1, metavar="SEQ", help="start at entry SEQ (default 1)")
    q.add_argument("--follow", action="store_true", help="keep writing new entries as they are appended")
    p.set_defaults(func=func)


def _seq(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("SEQ starts at 1")
    return value


def run(app: Any, args: argparse.Namespace) -> int:
    if args.audit_cmd == "export":
        return _export(app, args)
    from appliance.audit import verify

    started = time.perf_counter()
    with app.keystore.work() as work, app.db.read() as db:
        result = verify(db, work, args.head, app.integrity.deployment(), since=args.since)
    elapsed = max(time.perf_counter() - started, 1e-9)
    rate = f"{result.checked} entries in {elapsed:.2f} s ({result.checked / elapsed:,.0f} entries/s)"
    if result.ok:
        where = f" from entry {args.since}" if args.since > 1 else ""
        print(f"audit log OK{where}: {result.checked} entries, head MAC {result.head_mac}")
        print(f"rate: {rate}")
        return EXIT_OK
    print(f"audit log BROKEN at entry {result.first_bad_seq}: {result.reason}", file=sys.stderr)
    print(f"{result.checked} entries verified before it; {rate}", file=sys.stderr)
    return EXIT_FAILED


def _export(app: Any, args: argparse.Namespace) -> int:
    from appliance.auditops import FORMATTERS, iter_records

    fmt = FORMATTERS[args.format]
    after = args.since - 1
    try:
        while True:
            for rec in iter_records(app.db.read, after + 1):
                sys.stdout.write(fmt(rec) + "\n")
                after = rec["seq"]
            sys.stdout.flush()
            if not args.follow:
                return EXIT_OK
            time.sleep(FOLLOW_POLL_SECONDS)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        return EXIT_OK
