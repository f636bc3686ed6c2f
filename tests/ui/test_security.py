"""Browser-side guarantees: cookie attributes, CSRF refused from another origin,
the security headers on every page, the idle lock, error pages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.support import Server
from tests.ui.support import PASSWORD, PIN, Lab, enroll, login, new_context, start_lab

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def _user(lab: Lab, browser, email: str, admin: bool = False):
    context = new_context(browser)
    page = context.new_page()
    enroll(page, f"{lab.url}/enroll#token={lab.invite(email, admin)}")
    login(page, lab.url, email)
    return context, page


@pytest.fixture
def attacker(lab) -> Iterator[str]:
    """A page on another origin (same host, other port: a *same-site* origin, so
    SameSite=Strict cookies do go along; only the CSRF checks stand in the way)."""
    form = (
        f'<html><body><form method="post" action="{lab.url}/vaults">'
        '<input name="name" value="Planted by attacker"><input name="_csrf" value="guess">'
        '<button type="submit">Win a prize</button></form></body></html>'
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(form)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_session_cookie_attributes_and_new_id_each_login(lab, browser):
    context, page = _user(lab, browser, "cookies@example.com")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["__Host-coffre_session"]
    # Chromium accepted a Secure `__Host-` cookie over http://127.0.0.1 (a secure context).
    assert session["secure"] is True
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/"
    assert session["domain"] == "127.0.0.1"  # host-only: no Domain attribute
    assert session["expires"] == -1  # ends with the browser
    assert cookies["__Host-coffre_csrf"]["secure"] and cookies["__Host-coffre_csrf"]["httpOnly"]
    assert page.evaluate("document.cookie") == "", "no cookie is readable by scripts"
    first = session["value"]

    # Log in again in the same browser: a new session, and the old one is revoked.
    login(page, lab.url, "cookies@example.com")
    second = {c["name"]: c for c in context.cookies()}["__Host-coffre_session"]["value"]
    assert second != first and second[:30] != first[:30]
    with httpx.Client(base_url=lab.url) as http:
        r = http.get("/vaults", headers={"Cookie": f"__Host-coffre_session={first}"})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert http.get("/vaults", headers={"Cookie": f"__Host-coffre_session={second}"}).status_code == 200

    # Log out revokes it on the server, not only in the browser.
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_url("**/login")
    assert "__Host-coffre_session" not in {c["name"] for c in context.cookies()}
    with httpx.Client(base_url=lab.url) as http:
        assert http.get("/vaults", headers={"Cookie": f"__Host-coffre_session={second}"}).status_code == 303
    context.close()

    # http://localhost is a secure context too: the `__Host-` cookies are kept there.
    other = new_context(browser)
    page = other.new_page()
    page.goto(lab.url.replace("127.0.0.1", "localhost") + "/login")
    kept = {(c["name"], c["domain"], c["secure"]) for c in other.cookies()}
    assert ("__Host-coffre_csrf", "localhost", True) in kept
    other.close()


@pytest.mark.slow
def test_form_posted_from_another_origin_is_refused(lab, browser, attacker):
    context, page = _user(lab, browser, "victim@example.com")
    page.goto(attacker)
    with page.expect_response(lambda r: r.url == f"{lab.url}/vaults" and r.request.method == "POST") as refused:
        page.get_by_role("button", name="Win a prize").click()
    assert refused.value.status == 403
    assert "another site" in page.content()
    page.goto(f"{lab.url}/vaults")
    assert "Planted by attacker" not in page.content()

    # Same origin but without the page's token: refused too.
    token = {c["name"]: c["value"] for c in context.cookies()}["__Host-coffre_session"]
    with httpx.Client(base_url=lab.url) as http:
        r = http.post(
            "/vaults",
            data={"name": "No token"},
            headers={"Cookie": f"__Host-coffre_session={token}", "Sec-Fetch-Site": "same-origin"},
        )
        assert r.status_code == 403
        # The Bearer API is not a browser form: no CSRF token needed there.
        r = http.post("/api/v1/auth/login", json={"email": "victim@example.com", "password": PASSWORD})
        assert r.status_code == 200
    context.close()


@pytest.mark.slow
def test_security_headers_on_every_page(lab, browser):
    context, page = _user(lab, browser, "headers@example.com", admin=True)
    documents = []
    page.on("response", lambda r: documents.append(r) if r.request.resource_type == "document" else None)
    for path in ("/vaults", "/vaults/new", "/account", "/admin/users", "/admin/audit", "/admin/status", "/nope"):
        page.goto(lab.url + path)
    page.goto(lab.url + "/login")
    assert len(documents) >= 8
    for response in documents:
        headers = response.all_headers()
        assert headers["content-security-policy"] == CSP, response.url
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert "camera=()" in headers["permissions-policy"] and "geolocation=()" in headers["permissions-policy"]
        assert headers["cache-control"] == "no-store"
    context.close()


@pytest.fixture(scope="module")
def strict_lab(tmp_path_factory) -> Iterator[Lab]:
    """An appliance with a 2-second idle lock and tight login limits."""
    lab = start_lab(
        Path(tmp_path_factory.mktemp("ui-strict")),
        idle_lock_seconds=2,
    )
    try:
        yield lab
    finally:
        lab.server.stop()


@pytest.mark.slow
def test_idle_lock_leaves_no_secret_and_ends_the_session(strict_lab, browser):
    lab = strict_lab
    context = new_context(browser)
    page = context.new_page()
    enroll(page, f"{lab.url}/enroll#token={lab.invite('idle@example.com')}")
    login(page, lab.url, "idle@example.com")
    page.get_by_role("link", name="New vault").click()
    page.get_by_label("Name", exact=True).fill("Idle")
    page.get_by_role("button", name="Create", exact=True).click()
    page.get_by_role("link", name="New item").click()
    page.get_by_label("Title", exact=True).fill("Router")
    page.get_by_label("Password", exact=True).fill("idle-secret-7c1f0e")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("button", name="Reveal", exact=True).click()
    expect(page.locator("#secret")).to_have_text("idle-secret-7c1f0e")
    page.wait_for_url("**/locked", timeout=10000)
    assert "idle-secret-7c1f0e" not in page.content()
    assert "locked" in page.locator("h1").inner_text()
    page.goto(lab.url + "/vaults")
    assert page.url.endswith("/login"), "the session ended on the server"
    context.close()


@pytest.mark.slow
def test_error_pages_in_plain_words(strict_lab, browser):
    lab = strict_lab
    context = new_context(browser)
    page = context.new_page()
    enroll(page, f"{lab.url}/enroll#token={lab.invite('errors@example.com')}")

    # Wrong PIN says so; five lock the account: "locked, ask an administrator".
    for _ in range(5):
        page.goto(lab.url + "/login")
        page.get_by_label("Email", exact=True).fill("errors@example.com")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Log in", exact=True).click()
        page.get_by_label("PIN", exact=True).fill("000000" if PIN != "000000" else "111111")
        page.get_by_role("button", name="Unlock", exact=True).click()
        assert "PIN" in page.locator("[role=alert]").inner_text()
    page.get_by_label("Email", exact=True).fill("errors@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as locked:
        page.get_by_role("button", name="Log in", exact=True).click()
    assert locked.value.status == 423
    assert "Ask an administrator" in page.locator("[role=alert]").inner_text()

    # 404 and 413 as pages, never a trace.
    response = page.goto(lab.url + "/no/such/page")
    assert response.status == 404 and "Not found" in page.locator("h1").inner_text()
    with httpx.Client(base_url=lab.url) as http:
        big = http.post(
            "/login",
            content=b"email=" + b"a" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"},
        )
        assert big.status_code == 413 and "Too large" in big.text and "Traceback" not in big.text
    context.close()


@pytest.mark.slow
def test_login_rate_limit_says_when_to_retry(tmp_path, browser):
    lab = start_lab(tmp_path, address_attempts=3)
    try:
        context = new_context(browser)
        page = context.new_page()
        statuses = []
        for _ in range(4):
            page.goto(lab.url + "/login")
            page.get_by_label("Email", exact=True).fill("nobody@example.com")
            page.get_by_label("Password", exact=True).fill("wrong password here")
            with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as r:
                page.get_by_role("button", name="Log in", exact=True).click()
            statuses.append(r.value.status)
        assert statuses == [401, 401, 401, 429]
        assert r.value.headers["retry-after"].isdigit()
        assert "Try again in" in page.locator("[role=alert]").inner_text()
        context.close()
    finally:
        lab.server.stop()


@pytest.mark.slow
def test_hsm_unavailable_is_a_503_page(strict_lab, browser, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text(
        strict_lab.config.read_text().replace("/usr/lib/softhsm/libsofthsm2.so", str(tmp_path / "gone.so"))
    )
    server = Server(broken, tmp_path / "server.log").start(wait_healthy=False)
    try:
        context = new_context(browser)
        page = context.new_page()
        page.goto(server.url + "/login")
        page.get_by_label("Email", exact=True).fill("anyone@example.com")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Log in", exact=True).click()
        assert answer.value.status == 503
        assert answer.value.headers["retry-after"] == "5"
        assert "HSM or the database is unavailable" in page.locator("main").inner_text()
        assert "Traceback" not in page.content()
        context.close()
    finally:
        server.stop()
