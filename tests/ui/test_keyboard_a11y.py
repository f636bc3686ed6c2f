"""Keyboard only (log in, create an item: Tab, Enter, typing, no mouse) and axe-core
on each main page (no serious or critical violation)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.ui.support import AXE, PASSWORD, PIN, Lab, have_axe, login, new_context


def _api_user_with_vault(lab: Lab, email: str, admin: bool = False) -> str:
    token = lab.invite(email, admin)
    with httpx.Client(base_url=lab.url, timeout=30) as http:
        assert http.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN}).status_code == 201
        ticket = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["login_ticket"]
        bearer = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": PIN}).json()["token"]
        headers = {"Authorization": f"Bearer {bearer}"}
        vault = http.post("/api/v1/vaults", json={"name": "Keyboard"}, headers=headers).json()
        http.post(
            f"/api/v1/vaults/{vault['id']}/items",
            json={
                "title": "Mail relay",
                "username": "relay",
                "password": "relay-pass-0",
                "url": "https://mail.example",
            },
            headers=headers,
        )
        http.post("/api/v1/auth/logout", headers=headers)
    return str(vault["id"])


def _active(page) -> str:
    return str(page.evaluate("(document.activeElement.innerText || document.activeElement.id || '').trim()"))


def _tab_to(page, label: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if _active(page) == label:
            return
    raise AssertionError(f"Tab never reached {label!r}")


@pytest.mark.slow
def test_keyboard_only_login_and_new_item(lab, browser):
    _api_user_with_vault(lab, "keys@example.com")
    context = new_context(browser)
    page = context.new_page()
    page.goto(lab.url + "/login")
    # Autofocus is applied at the next rendering update, not at "load": wait for it.
    expect(page.locator("#email")).to_be_focused()
    page.keyboard.type("keys@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/pin")
    expect(page.locator("#pin")).to_be_focused()
    page.keyboard.type(PIN)
    page.keyboard.press("Enter")
    page.wait_for_url("**/vaults")

    _tab_to(page, "Keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/vaults/[0-9a-f]{32}$"))
    _tab_to(page, "New item")
    page.keyboard.press("Enter")
    page.wait_for_url("**/items/new")
    expect(page.locator("#title")).to_be_focused()
    page.keyboard.type("Typed with keys")
    page.keyboard.press("Tab")
    page.keyboard.type("kbd-user")
    page.keyboard.press("Tab")
    page.keyboard.type("kbd-pass-41c9")
    _tab_to(page, "url")
    page.keyboard.type("https://keys.example")
    page.keyboard.press("Tab")
    page.keyboard.type("no mouse at all")
    _tab_to(page, "Save")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/items/[0-9a-f]{32}$"))
    expect(page.locator("h1")).to_have_text("Typed with keys")
    # The focus is visible: the focused control draws an outline.
    _tab_to(page, "Reveal")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    page.keyboard.press("Enter")
    expect(page.locator("#secret")).to_have_text("kbd-pass-41c9")
    context.close()


PAGES = [
    "/login",
    "/enroll",
    "/vaults",
    "/vaults/new",
    "{vault}",
    "{vault}/items/new",
    "{item}",
    "{item}/edit",
    "{vault}/members",
    "{vault}/settings",
    "{vault}/files",
    "/transfers",
    "/transfers/new",
    "/account",
    "/admin/users",
    "/admin/audit?verify=1",
    "/admin/keys",
    "/admin/status",
    "/no/such/page",
]


@pytest.mark.slow
def test_axe_finds_no_serious_violation(lab, browser):
    assert have_axe(), "axe-core is missing: `make install` runs `npm ci` in tests/ui"
    vault_id = _api_user_with_vault(lab, "axe@example.com", admin=True)
    context = new_context(browser)
    page = context.new_page()
    login(page, lab.url, "axe@example.com")
    page.goto(f"{lab.url}/vaults/{vault_id}")
    page.get_by_role("link", name="Mail relay").click()
    item = page.url.removeprefix(lab.url)
    source = AXE.read_text()
    problems: list = []
    minor: list = []
    for template in PAGES:
        path = template.format(vault=f"/vaults/{vault_id}", item=item)
        page.goto(lab.url + path)
        page.evaluate(source)  # through the DevTools protocol: the page's CSP stays as it is
        result = page.evaluate(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
            "'wcag22aa', 'best-practice']}}).then(r => [r.passes.length, r.violations.map(v => [v.id, v.impact, "
            "v.nodes.length, v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(' | ')])])"
        )
        passes, violations = result
        assert passes > 10, f"axe did not run on {path}"
        problems += [(path, *v) for v in violations if v[1] in ("serious", "critical")]
        minor += [(path, *v) for v in violations if v[1] not in ("serious", "critical")]
    print("axe, moderate/minor:", minor)
    assert problems == []
    context.close()


def test_enroll_link_without_script_still_works(lab, browser):
    """Forms work without JavaScript: enroll with the code pasted, log in."""
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    token = lab.invite("noscript@example.com")
    page.goto(lab.url + "/enroll")
    page.get_by_label("Enrollment code", exact=True).fill(token)
    enroll_fields = page.get_by_label("Password", exact=True)
    enroll_fields.fill(PASSWORD)
    page.get_by_label("PIN", exact=True).fill(PIN)
    page.get_by_label("Confirm PIN", exact=True).fill(PIN)
    page.get_by_role("button", name="Enroll", exact=True).click()
    page.wait_for_url("**/login")
    login(page, lab.url, "noscript@example.com")
    page.get_by_role("link", name="New vault").click()
    page.get_by_label("Name", exact=True).fill("Plain HTML")
    page.get_by_role("button", name="Create", exact=True).click()
    page.get_by_role("link", name="New item").click()
    page.get_by_label("Title", exact=True).fill("Printer")
    page.get_by_label("Password", exact=True).fill("printer-pass-77")
    page.get_by_role("button", name="Save", exact=True).click()
    assert "printer-pass-77" not in page.content()
    # Reveal is a plain form post: the answer is the item page with the password shown.
    page.get_by_role("button", name="Reveal", exact=True).click()
    assert page.locator("#secret").inner_text() == "printer-pass-77"
    assert page.get_by_role("button", name="Copy password").is_hidden(), "copying needs the script"
    context.close()
