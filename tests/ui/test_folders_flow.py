"""Folders, folder access, item history and TOTP in the browser: an administrator
makes a folder, puts an item with a TOTP secret in it, reads the code (countdown,
copy), edits the item and restores the first version from its history, and sets a
colleague to "none" on the folder: for the colleague the folder and its item do not
exist. The new pages pass axe (no serious or critical violation)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.ui.support import AXE, PASSWORD, PIN, Watch, have_axe, login, new_context, shot

ADMIN, COLLEAGUE = "folders-admin@example.com", "folders-colleague@example.com"
TOTP = "JBSWY3DPEHPK3PXP"


def _api_user(lab, email: str) -> dict[str, str]:
    token = lab.invite(email)
    with httpx.Client(base_url=lab.url, timeout=30) as http:
        assert http.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN}).status_code == 201
        ticket = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["login_ticket"]
        bearer = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": PIN}).json()["token"]
    return {"Authorization": f"Bearer {bearer}"}


def _axe(page, url: str) -> list:
    page.goto(url)
    page.evaluate(AXE.read_text())
    passes, violations = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
        "'wcag22aa', 'best-practice']}}).then(r => [r.passes.length, r.violations.map(v => [v.id, v.impact, "
        "v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(' | ')])])"
    )
    assert passes > 10, url
    return [(url, *v) for v in violations if v[1] in ("serious", "critical")]


@pytest.mark.slow
def test_folders_access_history_and_totp_in_the_browser(lab, browser):
    assert have_axe(), "axe-core is missing: `make install` runs `npm ci` in tests/ui"
    admin_api = _api_user(lab, ADMIN)
    colleague_api = _api_user(lab, COLLEAGUE)
    with httpx.Client(base_url=lab.url, timeout=30) as http:
        vault = http.post("/api/v1/vaults", json={"name": "Ops"}, headers=admin_api).json()["id"]
        r = http.post(f"/api/v1/vaults/{vault}/members", json={"email": COLLEAGUE, "role": "write"}, headers=admin_api)
        assert r.status_code == 201
    watch = Watch()
    context = new_context(browser, watch, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    login(page, lab.url, ADMIN)
    page.goto(f"{lab.url}/vaults/{vault}")

    # A folder, and an item with a TOTP secret in it.
    page.get_by_label("Folder name").fill("Production")
    page.get_by_role("button", name="Create folder").click()
    expect(page.get_by_role("link", name="Production")).to_have_attribute("aria-current", "page")
    folder_url = page.url
    page.get_by_role("link", name="New item").click()
    page.get_by_label("Title").fill("Prod console")
    page.get_by_label("Password", exact=True).fill("first-pass-1")
    page.get_by_label("TOTP secret").fill(TOTP)
    expect(page.get_by_label("Folder")).to_have_value(folder_url.rsplit("=", 1)[1])
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/items/[0-9a-f]{32}$"))
    item_url = page.url
    expect(page.locator("dd").filter(has_text="Production").first).to_be_visible()

    # TOTP: the code on request, with a countdown, and a copy button.
    page.get_by_role("button", name="Show code").click()
    expect(page.locator("#totp-code")).to_have_text(re.compile(r"^\d{6}$"))
    expect(page.locator("[data-totp-left]")).to_have_text(re.compile(r"^\d+ s left$"))
    first = page.locator("[data-totp-left]").inner_text()
    page.wait_for_timeout(1500)
    assert page.locator("[data-totp-left]").inner_text() != first, "the countdown moves"
    # The browser is shared with earlier tests: empty its clipboard before copying.
    page.evaluate("navigator.clipboard.writeText('')")
    page.get_by_role("button", name="Copy code").click()
    copied = ""
    for _ in range(50):  # the copy fetches the current code first
        copied = page.evaluate("navigator.clipboard.readText()")
        if copied:
            break
        page.wait_for_timeout(100)
    assert re.fullmatch(r"\d{6}", copied) and copied == page.locator("#totp-code").inner_text()

    # Edit, then restore version 1 from the history.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Password", exact=True).fill("second-pass-2")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(item_url)
    page.get_by_role("link", name="History").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    page.get_by_role("link", name="View version 1").click()
    page.get_by_role("button", name="Reveal").click()
    expect(page.locator("#old-secret")).to_have_text("first-pass-1")
    page.get_by_role("button", name="Restore this version").click()
    page.wait_for_url(item_url)
    page.get_by_role("button", name="Reveal").click()
    expect(page.locator("#secret")).to_have_text("first-pass-1")
    expect(page.get_by_text("Version 3")).to_be_visible()
    shot(page, "item_totp_history")
    page.goto(f"{item_url}/history")
    shot(page, "item_history")

    # Folder access: the colleague set to none.
    page.goto(folder_url)
    page.get_by_role("link", name="Folder access").first.click()
    page.get_by_label(f"Folder access for {COLLEAGUE}").select_option("none")
    page.get_by_role("button", name=f"Save access for {COLLEAGUE}").click()
    expect(page.get_by_role("status")).to_contain_text("Access saved")
    access_url = page.url
    shot(page, "folder_access")
    page.goto(folder_url)
    shot(page, "vault_folders")
    page.goto(access_url)
    row = page.locator("tr", has_text=COLLEAGUE)
    expect(row.locator("td").nth(2)).to_have_text("No access")

    colleague_ctx = new_context(browser, Watch())
    other = colleague_ctx.new_page()
    login(other, lab.url, COLLEAGUE)
    other.goto(f"{lab.url}/vaults/{vault}")
    expect(other.get_by_role("link", name="Production")).to_have_count(0)
    response = other.goto(item_url)
    assert response is not None and response.status == 404
    assert "Prod console" not in other.content()
    with httpx.Client(base_url=lab.url, timeout=30) as http:
        item_id = item_url.rsplit("/", 1)[1]
        hidden = http.get(f"/api/v1/items/{item_id}", headers=colleague_api)
        unknown = http.get(f"/api/v1/items/{'0' * 32}", headers=colleague_api)
        assert (hidden.status_code, hidden.content) == (unknown.status_code, unknown.content)
    colleague_ctx.close()

    # The new pages pass axe.
    problems: list = []
    folder_id = folder_url.rsplit("=", 1)[1]
    for url in (
        folder_url,
        f"{lab.url}/folders/{folder_id}",
        access_url,
        f"{item_url}/history",
        f"{item_url}/history/1",
        item_url,
        f"{item_url}/edit",
    ):
        problems += _axe(page, url)
    assert problems == []
    assert watch.csp_violations == [] and watch.console_errors == []
    context.close()
