"""Helpers for the browser tests: a real `coffre serve`, Chromium through
Playwright, and a watch on what each page does (requests, console, CSP)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import REPO, Server, init_data_dir, run_cli

CHROMIUM = os.environ.get("COFFRE_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "Quartz elephant trombone 7 harbour"
PIN = "582914"
SCREENSHOTS = REPO / "docs" / "screenshots"
AXE = REPO / "tests" / "ui" / "node_modules" / "axe-core" / "axe.min.js"
# Generous login limits: the suite logs in many times from 127.0.0.1.
TEST_CONFIG = "[security]\naccount_attempts = 1000\n"


def chromium_or_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (make install puts it there with apt)"
    return None


@dataclass
class Lab:
    config: Path
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    def invite(self, email: str, admin: bool = False) -> str:
        result = run_cli(self.config, "user", "invite", email, *(["--admin"] if admin else []))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def cli(self, *args: str) -> str:
        result = run_cli(self.config, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout


def start_lab(root: Path, address_attempts: int = 1000, idle_lock_seconds: int = 300) -> Lab:
    extra = f"address_attempts = {address_attempts}\n[ui]\nidle_lock_seconds = {idle_lock_seconds}\n"
    config = init_data_dir(root / "data", extra=TEST_CONFIG + extra)
    server = Server(config, root / "server.log").start()
    return Lab(config, server)


@dataclass
class Watch:
    """Everything a browser context requested, logged and refused."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def attach(self, context: Any) -> None:
        context.on("request", lambda r: self.requests.append(r.url))
        context.expose_binding("__coffreCsp", lambda _source, text: self.csp_violations.append(str(text)))
        context.add_init_script(
            "document.addEventListener('securitypolicyviolation', function (e) {"
            " window.__coffreCsp(e.violatedDirective + ' ' + e.blockedURI); });"
        )
        context.on("page", self.attach_page)

    def attach_page(self, page: Any) -> None:
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))


def new_context(browser: Any, watch: Watch | None = None, **kwargs: Any) -> Any:
    context = browser.new_context(**{"locale": "en-US", "viewport": {"width": 1280, "height": 860}, **kwargs})
    # Generous: CI runs the browser beside the rest of the suite on 2 cores.
    context.set_default_timeout(30000)
    if watch is not None:
        watch.attach(context)
    return context


def enroll(page: Any, link: str, password: str = PASSWORD, pin: str = PIN) -> None:
    page.goto(link)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("PIN", exact=True).fill(pin)
    page.get_by_label("Confirm PIN", exact=True).fill(pin)
    page.get_by_role("button", name="Enroll", exact=True).click()
    page.wait_for_url("**/login")


def login(page: Any, base: str, email: str, password: str = PASSWORD, pin: str = PIN) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_label("PIN", exact=True).fill(pin)
    page.get_by_role("button", name="Unlock", exact=True).click()
    page.wait_for_url("**/vaults")


def shot(page: Any, name: str) -> None:
    """Refresh docs/screenshots/NAME.png when asked (`make screenshots`), so an ordinary
    test run leaves the checkout's tracked files as they were."""
    if os.environ.get("COFFRE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def have_axe() -> bool:
    return AXE.exists() and shutil.which("node") is not None
