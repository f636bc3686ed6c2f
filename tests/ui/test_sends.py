"""Sending a password in the browser, the three ways: with a one-time code and by link
(to someone without an account, in a separate browser), and to a user who saves it into
their vault from "Received". axe on every new page; no CSP violation, no console error,
and the secret in no URL any browser asked for."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.ui.support import AXE, PASSWORD, PIN, Watch, have_axe, login, new_context, shot

SECRET = "Ui-Canary-Pa55-4c1d"


def _user(lab, email: str, with_item: bool = False) -> None:
    token = lab.invite(email)
    with httpx.Client(base_url=lab.url, timeout=30) as http:
        r = http.post("/api/v1/enroll", json={"token": token, "password": PASSWORD, "pin": PIN})
        assert r.status_code == 201, r.text
        ticket = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["login_ticket"]
        bearer = http.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": PIN}).json()["token"]
        headers = {"Authorization": f"Bearer {bearer}"}
        vault = http.post("/api/v1/vaults", json={"name": "Ops"}, headers=headers).json()["id"]
        if with_item:
            item = {"title": "Firewall", "username": "root", "password": SECRET, "url": "https://fw.example"}
            http.post(f"/api/v1/vaults/{vault}/items", json=item, headers=headers)
        http.post("/api/v1/auth/logout", headers=headers)


def _axe(page, problems: list) -> None:
    page.evaluate(AXE.read_text())
    passes, violations = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
        "'wcag22aa', 'best-practice']}}).then(r => [r.passes.length, r.violations.map(v => [v.id, v.impact, "
        "v.nodes.length])])"
    )
    assert passes > 10, f"axe did not run on {page.url}"
    problems += [(page.url, *v) for v in violations if v[1] in ("serious", "critical")]


@pytest.mark.slow
def test_send_three_ways_in_the_browser(lab, browser):
    assert have_axe(), "axe-core is missing: `make install` runs `npm ci` in tests/ui"
    _user(lab, "sender@example.com", with_item=True)
    _user(lab, "receiver@example.com")
    sender_watch, outsider_watch, receiver_watch = Watch(), Watch(), Watch()
    sender_ctx = new_context(browser, sender_watch)
    outsider_ctx = new_context(browser, outsider_watch)
    receiver_ctx = new_context(browser, receiver_watch)
    sender, outsider, receiver = sender_ctx.new_page(), outsider_ctx.new_page(), receiver_ctx.new_page()
    problems: list = []
    base = lab.url

    # With a one-time code, from the item's page.
    login(sender, base, "sender@example.com")
    sender.get_by_role("link", name="Ops").click()
    sender.get_by_role("link", name="Firewall").click()
    sender.locator("#main").get_by_role("link", name="Send", exact=True).click()
    expect(sender.get_by_role("heading", name="Send a password")).to_be_visible()
    _axe(sender, problems)
    shot(sender, "send-form")
    sender.get_by_label("With a one-time code").check()
    sender.get_by_role("button", name="Send", exact=True).click()
    expect(sender.get_by_role("heading", name="Password sent")).to_be_visible()
    _axe(sender, problems)
    link = sender.locator("#send-link").inner_text().strip()
    code = sender.locator("#send-code").inner_text().strip()
    assert "/s/cfx_" in link and code not in link and SECRET not in sender.content()

    outsider.goto(link)
    expect(outsider.get_by_role("button", name="Reveal")).to_be_visible()
    assert SECRET not in outsider.content()
    _axe(outsider, problems)
    shot(outsider, "send-public")
    outsider.get_by_label("One-time code").fill("WRNG-WRNG-WRNG")
    outsider.get_by_role("button", name="Reveal").click()
    expect(outsider.get_by_role("alert")).to_contain_text("The code is wrong")
    outsider.get_by_label("One-time code").fill(code)
    outsider.get_by_role("button", name="Reveal").click()
    expect(outsider.locator("#revealed-password")).to_have_text(SECRET)
    _axe(outsider, problems)
    outsider.goto(link)
    expect(outsider.get_by_role("heading", name="Not found")).to_be_visible()

    # By link only: a typed secret, from "Send a secret".
    sender.get_by_role("navigation", name="Main").get_by_role("link", name="Sends").click()
    sender.get_by_role("link", name="Send a secret").first.click()
    sender.get_by_label("Secret", exact=True).fill("typed-" + SECRET)
    sender.get_by_label("By link only").check()
    sender.get_by_role("button", name="Send", exact=True).click()
    link = sender.locator("#send-link").inner_text().strip()
    outsider.goto(link)
    outsider.get_by_role("button", name="Reveal").click()
    expect(outsider.locator("#revealed-password")).to_have_text("typed-" + SECRET)

    # To a user, who saves it into their vault.
    sender.goto(base + "/sends/new")
    sender.get_by_label("Secret", exact=True).fill("for-you-" + SECRET)
    sender.get_by_label("To a user").check()
    sender.get_by_label("Recipient email").fill("receiver@example.com")
    sender.get_by_role("button", name="Send", exact=True).click()
    expect(sender.get_by_role("heading", name="Password sent")).to_be_visible()
    login(receiver, base, "receiver@example.com")
    receiver.goto(base + "/received")
    expect(receiver.get_by_role("heading", name="Secret")).to_be_visible()
    _axe(receiver, problems)
    shot(receiver, "received")
    receiver.get_by_role("button", name="Save").click()
    expect(receiver.locator(".notice-ok")).to_contain_text("Saved into the vault")
    receiver.get_by_role("button", name="Reveal").click()
    expect(receiver.locator("#secret")).to_have_text("for-you-" + SECRET)

    # The sender's list: every send with its status; a pending one revoked.
    sender.goto(base + "/sends/new")
    sender.get_by_label("Secret", exact=True).fill("never-" + SECRET)
    sender.get_by_label("By link only").check()
    sender.get_by_role("button", name="Send", exact=True).click()
    sender.get_by_role("link", name="Sent passwords").click()
    rows = sender.locator("tbody tr")
    expect(rows).to_have_count(4)
    expect(sender.get_by_text("viewed", exact=True)).to_have_count(2)
    expect(sender.get_by_text("saved", exact=True)).to_have_count(1)
    sender.get_by_role("button", name="Revoke").click()
    expect(sender.get_by_role("status")).to_contain_text("Send revoked")
    expect(sender.get_by_text("revoked", exact=True)).to_have_count(1)
    _axe(sender, problems)
    shot(sender, "sends")

    assert problems == []
    for watch in (sender_watch, outsider_watch, receiver_watch):
        # The outsider's wrong code (403) and used link (404) are the only failed loads.
        errors = [e for e in watch.console_errors if "status of 403" not in e and "status of 404" not in e]
        assert watch.csp_violations == [] and errors == []
        assert not any(SECRET in url or (code and code in url) for url in watch.requests)
    for ctx in (sender_ctx, outsider_ctx, receiver_ctx):
        ctx.close()
