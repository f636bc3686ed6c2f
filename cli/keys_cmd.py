"""``coffre keys rotate|jobs|retire``: key jobs from the console."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from appliance.keyops import JobView, Options

EXIT_OK = 0
EXIT_FAILED = 1


def add_parsers(sub: Any, common: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("keys", parents=[common], help="HSM root keys: rotation jobs, retirement")
    ksub = p.add_subparsers(dest="keys_cmd", required=True)
    q = ksub.add_parser(
        "rotate",
        parents=[common],
        help="rotate a root key as a resumable job (running it again resumes the unfinished job)",
    )
    q.add_argument("kind", nargs="?", choices=["kek", "pepper", "audit", "bind", "ukw"])
    q.add_argument("--resume", metavar="JOB_ID", help="resume this job explicitly")
    q.add_argument("--dry-run", action="store_true", help="count what would change; change nothing")
    q.add_argument("--json", action="store_true", help="print progress as JSON lines")
    q.add_argument("--batch", type=int, default=200, help="rows per batch (default 200)")
    q.add_argument(
        "--threads", type=int, default=1, help="token sessions computing in parallel, up to the pool size (default 1)"
    )
    q.add_argument(
        "--pause-ms",
        type=float,
        default=20.0,
        help="sleep between batches, leaving the token and the database to requests (default 20 ms)",
    )
    q = ksub.add_parser("jobs", parents=[common], help="list key jobs and their state")
    q.add_argument("--json", action="store_true")
    q.add_argument("--failures", metavar="JOB_ID", help="list the rows a job could not move")
    q = ksub.add_parser("retire", parents=[common], help="destroy an old root version nothing references")
    q.add_argument("label", metavar="LABEL")
    q.add_argument("--dry-run", action="store_true", help="print the references; destroy nothing")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=func)


class Bar:
    """A one-line progress bar on a terminal: done/total, rate, ETA, failures."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.tty = out.isatty() and not as_json
        self.t0 = time.monotonic()
        self.done0: int | None = None
        self.last = 0.0

    def __call__(self, view: JobView) -> None:
        now = time.monotonic()
        if self.done0 is None:
            self.done0 = view.done
        rate = (view.done - self.done0) / max(now - self.t0, 1e-6)
        if self.as_json:
            line = view.as_dict() | {"rate": round(rate, 1)}
            self.out.write(json.dumps(line, sort_keys=True) + "\n")
            self.out.flush()
            return
        if not self.tty or (now - self.last < 0.1 and view.state == "running"):
            return
        self.last = now
        total = max(view.total, 1)
        width = 30
        filled = min(width, int(width * (view.done + view.failed) / total))
        left = max(view.total - view.done - view.failed, 0)
        eta = f"{left / rate:5.0f} s" if rate > 0 else "    ? s"
        self.out.write(
            f"\r{view.kind} -> {view.target} [{'#' * filled}{'.' * (width - filled)}] "
            f"{view.done}/{view.total} {rate:7.0f}/s ETA {eta} failures {view.failed} {view.phase:<8}"
        )
        self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")


def _summary(view: JobView) -> str:
    if view.state == "waiting":
        left = view.detail.get("users_left")
        return (
            f"job {view.id} ({view.kind} -> {view.target}) is waiting: {left} user(s) still reference an older "
            f"version; each moves at their next login/unlock. Run the same command again to re-count."
        )
    return f"job {view.id} ({view.kind} -> {view.target}) {view.state}: {view.done} moved, {view.failed} failed" + (
        f" (list them: coffre keys jobs --failures {view.id})" if view.failed else ""
    )


def _print_jobs(app: Any, args: argparse.Namespace) -> int:
    if args.failures:
        rows = app.keyops.failures(args.failures)
        if args.json:
            print(json.dumps(rows, indent=2, sort_keys=True))
        else:
            for r in rows:
                print(f"{r['table']}\t{r['row_id']}\t{r['error']}")
        return EXIT_OK
    jobs = [j.as_dict() for j in app.keyops.jobs()]
    if args.json:
        print(json.dumps(jobs, indent=2, sort_keys=True))
        return EXIT_OK
    if not jobs:
        print("no key jobs yet")
        return EXIT_OK
    print(f"{'id':<17} {'kind':<7} {'target':<18} {'state':<8} {'phase':<9} {'done':>8} {'total':>8} {'failed':>7}")
    for j in jobs:
        print(
            f"{j['id']:<17} {j['kind']:<7} {j['target'][:18]:<18} {j['state']:<8} {j['phase']:<9} "
            f"{j['done']:>8} {j['total']:>8} {j['failed']:>7}"
        )
    return EXIT_OK


def _retire(app: Any, args: argparse.Namespace) -> int:
    from appliance.keyops.retire import RetireRefused, retire

    try:
        result = retire(app, args.label, "cli", dry_run=args.dry_run)
    except RetireRefused as exc:
        result = exc.result
    if args.json:
        print(json.dumps(result.as_dict(), sort_keys=True))
    else:
        refs = result.references
        if refs is None:
            print(f"{result.label}: references unknown")
        elif not refs:
            print(f"{result.label}: no references")
        else:
            for name, n in sorted(refs.items()):
                print(f"{result.label}: {name} {n}")
        if result.retired:
            print(f"retired {result.label}: destroyed in the token")
        elif result.reason:
            print(f"coffre: {result.label} cannot be retired: {result.reason}", file=sys.stderr)
        else:
            print(f"{result.label} can be retired (dry run: nothing destroyed)")
    return EXIT_OK if result.reason is None else EXIT_FAILED


def run(app: Any, args: argparse.Namespace) -> int:
    if args.keys_cmd == "jobs":
        return _print_jobs(app, args)
    if args.keys_cmd == "retire":
        return _retire(app, args)
    if not args.kind and not args.resume:
        print("coffre: keys rotate needs KIND or --resume JOB_ID", file=sys.stderr)
        return 2
    if args.dry_run:
        kind = args.kind or app.keyops.job(args.resume).kind
        plan = app.keyops.plan(kind)
        if args.json:
            print(json.dumps(plan.as_dict(), sort_keys=True))
        else:
            what = f"resumes job {plan.resumes}" if plan.resumes else "would create it"
            print(f"dry run: {kind} -> {plan.target} ({what}); nothing changed")
            for name, n in sorted(plan.tables.items()):
                print(f"  {name}: {n}")
            print(f"  total: {plan.total}")
        return EXIT_OK
    bar = Bar(sys.stdout, args.json)
    options = Options(
        batch=max(1, args.batch), threads=max(1, args.threads), pause=max(0.0, args.pause_ms) / 1000, progress=bar
    )
    try:
        view = app.keyops.resume(args.resume, options) if args.resume else app.keyops.start(args.kind, "cli", options)
    except KeyboardInterrupt:
        bar.end()
        print("interrupted: the job is paused; run the same command again to resume it", file=sys.stderr)
        return 130
    bar.end()
    if not args.json:
        print(_summary(view))
    return EXIT_FAILED if view.failed or view.state == "failed" else EXIT_OK
