"""The first-contact banner `coffre serve --invite-admin EMAIL` prints once the server
answers /healthz, after uvicorn's start-up lines rather than before them: the URL,
and while no administrator has enrolled, a fresh one-time enrollment token for
EMAIL with its expiry and the command that uses it."""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO
from urllib.error import URLError

from appliance.config import Settings

RULE = "=" * 78


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host  # noqa: S104


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def wait_healthy(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:  # noqa: S310 (http to ourselves)
                if r.status == 200:
                    return True
        except (URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def first_contact(settings: Settings, admin_email: str) -> tuple[str | None, float | None]:
    """A new enrollment token for ``admin_email`` and its expiry, or (None, None) when an
    administrator has enrolled already. A token issued earlier for them stops working."""
    from appliance.core import Appliance

    app = Appliance(settings)
    try:
        if any(u.is_admin and u.status == "active" for u in app.accounts.list_users(None)):
            return None, None
        _, token = app.accounts.invite(admin_email, True)
        return token, app.clock() + settings.security.enrollment_ttl_seconds
    finally:
        app.close()


def render(url: str, admin_email: str, token: str | None, expires: float | None) -> str:
    lines = [RULE, f"Coffre is listening on {url}  (API documentation: {url}/schema)"]
    if token is None or expires is None:
        lines += [
            'An administrator has enrolled: log in as shown in README.md ("The API, with curl").',
        ]
    else:
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines += [
            f"First administrator {admin_email}: one-time enrollment token, valid until {when}",
            "(a new `make run` before enrolling issues a new token and voids this one):",
            "",
            f"    {token}",
            "",
            "Next step: open this link in a browser (the token is in the #fragment, never sent in a URL)",
            "",
            f"    {url}/enroll#token={token}",
            "",
            "or, in another terminal (choose your passphrase and a 6-digit PIN):",
            "",
            f"    curl -s -XPOST {url}/api/v1/enroll \\",
            f'      -d \'{{"token":"{token}","password":"a long passphrase you like 42","pin":"480213"}}\'',
            "",
            'then log in as README.md shows ("The API, with curl").',
        ]
    lines.append(RULE)
    return "\n".join(lines)


def announce_when_ready(
    settings: Settings,
    host: str,
    port: int,
    admin_email: str,
    out: TextIO = sys.stdout,
    issue: Callable[[Settings, str], tuple[str | None, float | None]] = first_contact,
) -> threading.Thread:
    """Start a thread that prints the banner once the server answers."""
    url = _url(host, port)
    probe = _url(_probe_host(host), port)

    def run() -> None:
        if not wait_healthy(probe, timeout=120):
            print(f"coffre: the server did not answer {probe}/healthz; no enrollment token issued", file=out)
            return
        token, expires = issue(settings, admin_email)
        print(render(url, admin_email, token, expires), file=out, flush=True)

    thread = threading.Thread(target=run, name="coffre-banner", daemon=True)
    thread.start()
    return thread
