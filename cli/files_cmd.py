"""``coffre file put|get|ls|rm|login`` (a user's files, over the HTTP API) and
``coffre files gc|migrate`` (operators, on the appliance's own database and store).

How a script authenticates: files belong to users and are sealed under vault keys
only a member's private key opens, so ``coffre file`` talks to the server as a
user with a session token, like the web page does. ``coffre file login --email E``
asks for the password and the PIN on the terminal (or reads them from stdin, one
per line) and prints the session token as its last line; a script passes it in
``COFFRE_TOKEN`` (never on the command line) with ``COFFRE_URL`` (default
``http://127.0.0.1:8080``). The token lasts as a session does (``[security]
session_idle_seconds`` / ``session_max_seconds``); ``coffre file logout`` ends it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

URL_ENV = "COFFRE_URL"
TOKEN_ENV = "COFFRE_TOKEN"  # noqa: S105 - the variable's name
PIECE = 1024 * 1024


class _Progress:
    """A progress line on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.on = sys.stderr.isatty()
        self.started = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and (now - self.last > 0.2):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-6) / 1e6
        if self.total:
            width = 30
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            pct = 100 * self.done / self.total
            sys.stderr.write(f"\r{self.label} [{bar}] {pct:5.1f}% {rate:7.1f} MB/s")
        else:
            sys.stderr.write(f"\r{self.label} {self.done / 1e6:10.1f} MB {rate:7.1f} MB/s")
        sys.stderr.flush()

    def end(self) -> None:
        if self.on:
            self._draw(time.monotonic())
            sys.stderr.write("\n")


def _client(args: argparse.Namespace, need_token: bool = True) -> httpx.Client:
    url = args.url or os.environ.get(URL_ENV) or "http://127.0.0.1:8080"
    headers = {}
    token = os.environ.get(TOKEN_ENV)
    if need_token:
        if not token:
            raise SystemExit(f"coffre: set {TOKEN_ENV} to a session token (from `coffre file login --email ...`)")
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(60.0, read=600.0))


def _check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise SystemExit(f"coffre: {r.status_code}: {detail}")
    return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else None


def _ask(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\n")


def cmd_file(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "login": _login,
        "logout": _logout,
        "put": _put,
        "get": _get,
        "ls": _ls,
        "rm": _rm,
    }
    return handlers[args.file_cmd](args)


def _login(args: argparse.Namespace) -> int:
    with _client(args, need_token=False) as c:
        ticket = _check(c.post("/api/v1/auth/login", json={"email": args.email, "password": _ask("password: ")}))
        out = _check(c.post("/api/v1/auth/unlock", json={"login_ticket": ticket["login_ticket"], "pin": _ask("PIN: ")}))
    print(f"session token for {args.email} (pass it in {TOKEN_ENV}; it ends with the session):")
    print(out["token"])
    return 0


def _logout(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _check(c.post("/api/v1/auth/logout"))
    return 0


def _put(args: argparse.Namespace) -> int:
    path = Path(args.path)
    size = path.stat().st_size
    progress = _Progress(path.name, size)

    def body() -> Iterator[bytes]:
        with path.open("rb") as fh:
            while piece := fh.read(PIECE):
                progress.add(len(piece))
                yield piece

    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    with _client(args) as c:
        if args.replace:
            r = c.put(f"/api/v1/files/{args.replace}/content", content=body(), headers=headers)
        else:
            params = {"name": args.name or path.name}
            r = c.post(f"/api/v1/vaults/{args.vault}/files", params=params, content=body(), headers=headers)
        progress.end()
        out = _check(r)
    print(json.dumps(out) if args.json else f"{out['id']}  v{out['version']}  {out['size']} bytes  {out['name']}")
    return 0


def _get(args: argparse.Namespace) -> int:
    with _client(args) as c, c.stream("GET", f"/api/v1/files/{args.file_id}/content") as r:
        if r.status_code >= 400:
            r.read()
            _check(r)
        total = int(r.headers.get("content-length", "0")) or None
        if args.output == "-":
            for piece in r.iter_bytes(PIECE):
                sys.stdout.buffer.write(piece)
            return 0
        target = Path(args.output or _name(r.headers.get("content-disposition", ""), args.file_id))
        partial = target.with_name(target.name + ".part")
        progress = _Progress(target.name, total)
        try:
            with partial.open("wb") as fh:
                for piece in r.iter_bytes(PIECE):
                    fh.write(piece)
                    progress.add(len(piece))
            if total is not None and partial.stat().st_size != total:
                raise SystemExit("coffre: the download was cut short (the server refused the rest); nothing kept")
            os.replace(partial, target)
        except (httpx.HTTPError, SystemExit):
            partial.unlink(missing_ok=True)
            raise
        progress.end()
    print(target)
    return 0


def _name(disposition: str, fallback: str) -> str:
    import urllib.parse

    if "filename*=UTF-8''" in disposition:
        name = urllib.parse.unquote(disposition.split("filename*=UTF-8''", 1)[1].split(";")[0])
        name = Path(name).name
        if name and name not in (".", ".."):
            return name
    return fallback


def _ls(args: argparse.Namespace) -> int:
    with _client(args) as c:
        files = _check(c.get(f"/api/v1/vaults/{args.vault}/files"))
    if args.json:
        print(json.dumps(files))
        return 0
    for f in files:
        print(f"{f['id']}  v{f['version']:<3} {f['size']:>14}  {f['updated_at']}  {f['name']}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _check(c.delete(f"/api/v1/files/{args.file_id}"))
    print(f"deleted {args.file_id}")
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser, cmd_files: Callable[[argparse.Namespace], int]) -> None:
    p = sub.add_parser("file", parents=[common], help="your files in vaults, over the HTTP API (COFFRE_TOKEN)")
    fsub = p.add_subparsers(dest="file_cmd", required=True)
    web = argparse.ArgumentParser(add_help=False)
    web.add_argument("--url", default=None, help=f"server URL (default: ${URL_ENV} or http://127.0.0.1:8080)")
    q = fsub.add_parser("login", parents=[web], help="password + PIN; prints a session token last")
    q.add_argument("--email", required=True)
    fsub.add_parser("logout", parents=[web], help="end the session of COFFRE_TOKEN")
    q = fsub.add_parser("put", parents=[web], help="upload a file into a vault (or a new version with --replace)")
    q.add_argument("path")
    q.add_argument("--vault", help="vault id")
    q.add_argument("--name", help="name in the vault (default: the file's name)")
    q.add_argument("--replace", metavar="FILE_ID", help="upload as the next version of this file")
    q.add_argument("--json", action="store_true")
    q = fsub.add_parser("get", parents=[web], help="download a file (written as NAME.part, renamed when whole)")
    q.add_argument("file_id")
    q.add_argument("-o", "--output", help="where to write it ('-': standard output; default: its name)")
    q = fsub.add_parser("ls", parents=[web], help="list a vault's files")
    q.add_argument("vault")
    q.add_argument("--json", action="store_true")
    q = fsub.add_parser("rm", parents=[web], help="delete a file, its versions and their content")
    q.add_argument("file_id")
    p.set_defaults(func=cmd_file)

    p = sub.add_parser("files", parents=[common], help="the file store: orphans and moves (operators)")
    osub = p.add_subparsers(dest="files_cmd", required=True)
    q = osub.add_parser("gc", parents=[common], help="remove what killed or failed uploads left behind")
    q.add_argument(
        "--grace", type=float, default=None, help="seconds an upload may run (default: [files] gc_grace_seconds)"
    )
    q = osub.add_parser("migrate", parents=[common], help="move every file's content to the other store, online")
    q.add_argument("--to", required=True, choices=["filesystem", "database"])
    p.set_defaults(func=cmd_files)


def run_files(args: argparse.Namespace, app: Any) -> int:
    if args.files_cmd == "gc":
        from appliance.files.gc import collect

        report = collect(app, args.grace)
        print(f"removed {report.uploads} unfinished upload(s) and {report.blobs} unreferenced blob(s)")
        return 0
    from appliance.files.gc import migrate

    moved = migrate(app, args.to)
    print(f"moved {moved} file version(s) to the {args.to} store")
    print(f'set [files] store = "{args.to}" in the configuration so that new files go there too')
    return 0
