"""The other flows in the browser: the console's user actions, the version check on
edit, vault rename/delete, the last administrator, my sessions, admin pages hidden."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.support import run_cli
from tests.ui.support import enroll, login, new_context, shot

NEW_PASSWORD = "Glacier lantern orchestra 9 meadow"


def _person(lab, browser, email: str, admin: bool = False):
    context = new_context(browser, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    enroll(page, f"{lab.url}/enroll#token={lab.invite(email, admin)}")
    login(page, lab.url, email)
    return context, page


@pytest.mark.slow
def test_console_user_actions_and_hidden_from_others(lab, browser):
    admin_ctx, admin = _person(lab, browser, "console-admin@example.com", admin=True)
    user_ctx, user = _person(lab, browser, "console-user@example.com")

    for path in ("/admin/users", "/admin/audit", "/admin/keys", "/admin/status"):
        assert user.goto(lab.url + path).status == 404

    # Key jobs: a KEK rotation run from the console shows with its progress and the
    # root versions' state and references.
    rotated = run_cli(lab.config, "keys", "rotate", "kek", "--json")
    assert rotated.returncode == 0, rotated.stderr
    job = json.loads(rotated.stdout.splitlines()[-1])
    admin.goto(lab.url + "/admin/keys")
    admin.get_by_role("link", name="Key jobs").wait_for()
    bar = admin.get_by_role("progressbar", name=f"Progress of job {job['id']}")
    assert bar.get_attribute("value") == bar.get_attribute("max")
    roots = admin.get_by_role("table").last
    assert "coffre-kek-v1" in roots.inner_text() and job["target"] in roots.inner_text()
    shot(admin, "admin-key-jobs")

    # A vault administrator rotates the vault key from the vault's settings.
    admin.goto(lab.url + "/vaults/new")
    admin.get_by_label("Name", exact=True).fill("Rotating")
    admin.get_by_role("button", name="Create", exact=True).click()
    admin.wait_for_url(re.compile(r".*/vaults/[0-9a-f]{32}$"))
    admin.goto(admin.url + "/settings")
    admin.get_by_role("button", name="Rotate vault key").click()
    expect(admin.get_by_text("Vault key rotated")).to_be_visible()
    admin.goto(lab.url + "/admin/keys")
    expect(admin.get_by_role("cell", name="vault", exact=True).first).to_be_visible()

    # Reset password: the link is shown once; the user sets a new password, keeps the PIN.
    admin.goto(lab.url + "/admin/users")
    admin.get_by_role("button", name="Reset password of console-user@example.com").click()
    link = admin.locator("#one-time-link").input_value()
    assert "/reset#token=cfr_" in link
    user.goto(lab.url + "/vaults")
    assert user.url.endswith("/login"), "a reset closes the user's sessions"
    user.goto(link)
    user.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    user.get_by_role("button", name="Set password").click()
    user.wait_for_url("**/login")
    login(user, lab.url, "console-user@example.com", password=NEW_PASSWORD)

    # Disable ends the open session; enable lets the user back in.
    admin.goto(lab.url + "/admin/users")
    admin.get_by_role("button", name="Disable console-user@example.com").click()
    expect(admin.locator("[role=status]")).to_contain_text("disabled")
    user.reload()
    assert user.url.endswith("/login")
    admin.get_by_role("button", name="Enable console-user@example.com").click()
    login(user, lab.url, "console-user@example.com", password=NEW_PASSWORD)

    # A locked account: unlock from the console.
    user_ctx.clear_cookies()
    for _ in range(5):
        user.goto(lab.url + "/login")
        user.get_by_label("Email", exact=True).fill("console-user@example.com")
        user.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        user.get_by_role("button", name="Log in", exact=True).click()
        user.get_by_label("PIN", exact=True).fill("000001")
        user.get_by_role("button", name="Unlock", exact=True).click()
    admin.goto(lab.url + "/admin/users")
    admin.get_by_role("button", name="Unlock console-user@example.com").click()
    expect(admin.locator("[role=status]")).to_contain_text("unlocked")
    login(user, lab.url, "console-user@example.com", password=NEW_PASSWORD)

    # My account: sessions listed; revoking another one ends it.
    other_ctx = new_context(browser)
    other = other_ctx.new_page()
    login(other, lab.url, "console-user@example.com", password=NEW_PASSWORD)
    user.goto(lab.url + "/account")
    rows = user.locator("tbody tr")
    assert rows.count() == 2
    user.get_by_role("button", name="Revoke").click()
    expect(user.locator("[role=status]")).to_contain_text("revoked")
    other.reload()
    assert other.url.endswith("/login")
    for ctx in (admin_ctx, user_ctx, other_ctx):
        ctx.close()


@pytest.mark.slow
def test_edit_conflict_keeps_what_was_typed(lab, browser):
    ctx, page = _person(lab, browser, "editor@example.com")
    page.get_by_role("link", name="New vault").click()
    page.get_by_label("Name", exact=True).fill("Edits")
    page.get_by_role("button", name="Create", exact=True).click()
    vault = page.url
    page.get_by_role("link", name="New item").click()
    page.get_by_label("Title", exact=True).fill("Switch")
    page.get_by_label("Password", exact=True).fill("switch-pass-1")
    page.get_by_role("button", name="Save", exact=True).click()
    item = page.url
    second = ctx.new_page()
    second.goto(item + "/edit")
    page.goto(item + "/edit")
    page.get_by_label("Notes", exact=True).fill("first edit")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(item)

    second.get_by_label("Notes", exact=True).fill("my careful notes")
    with second.expect_response(lambda r: r.request.method == "POST") as saved:
        second.get_by_role("button", name="Save", exact=True).click()
    assert saved.value.status == 409
    assert "changed by someone else" in second.locator("[role=alert]").inner_text()
    assert second.get_by_label("Notes", exact=True).input_value() == "my careful notes"
    second.get_by_role("button", name="Save", exact=True).click()
    second.wait_for_url(item)
    assert "my careful notes" in second.content()
    second.get_by_role("button", name="Reveal", exact=True).click()
    expect(second.locator("#secret")).to_have_text("switch-pass-1")  # kept: the form never held it

    # Delete the item (a confirmation that names it), then rename, the last administrator,
    # delete the vault (a confirmation that names it).
    page.goto(item)
    page.get_by_role("link", name="Delete").click()
    assert "Switch" in page.locator("h1").inner_text()
    page.get_by_role("button", name="Delete item").click()
    expect(page.locator("[role=status]")).to_contain_text("Item deleted.")
    assert page.goto(item).status == 404
    page.goto(vault)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Name", exact=True).fill("Edits renamed")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(page.locator("h1")).to_have_text("Edits renamed")
    page.get_by_role("link", name="Members").click()
    assert "Last administrator: cannot be removed" in page.content()
    page.get_by_label("Access for editor@example.com").select_option("read")
    page.get_by_role("button", name="Change").click()
    expect(page.locator("[role=alert]")).to_contain_text("last administrator")
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Delete vault").click()
    expect(page.locator("h1")).to_have_text(re.compile("Edits renamed"))
    page.get_by_role("button", name="Delete “Edits renamed”").click()
    page.wait_for_url("**/vaults")
    assert "Edits renamed" not in page.locator("main").inner_text()
    ctx.close()


@pytest.mark.slow
def test_search_sort_and_remembered_sort(lab, browser):
    ctx, page = _person(lab, browser, "sorter@example.com")
    page.get_by_role("link", name="New vault").click()
    page.get_by_label("Name", exact=True).fill("Sorting")
    page.get_by_role("button", name="Create", exact=True).click()
    vault = page.url
    for title, username in (("Bravo", "zulu"), ("Alpha", "yankee"), ("Charlie", "xray")):
        page.goto(vault + "/items/new")
        page.get_by_label("Title", exact=True).fill(title)
        page.get_by_label("Username", exact=True).fill(username)
        page.get_by_role("button", name="Save", exact=True).click()
    page.goto(vault)
    titles = lambda: page.locator("tbody tr:not([hidden]) td:first-child").all_inner_texts()  # noqa: E731
    assert titles() == ["Alpha", "Bravo", "Charlie"]
    page.get_by_role("link", name="Username").click()
    assert titles() == ["Charlie", "Alpha", "Bravo"]
    page.reload()
    assert titles() == ["Charlie", "Alpha", "Bravo"], "the sort is remembered"
    page.get_by_label("Search items").fill("yank")
    assert titles() == ["Alpha"]
    # Without the script, the server filters.
    assert "Bravo" not in page.goto(vault + "?q=alp").text()
    ctx.close()


@pytest.mark.slow
def test_enrollment_shows_the_estimators_reason_live_and_on_refusal(lab, browser):
    context = new_context(browser)
    page = context.new_page()
    page.goto(f"{lab.url}/enroll#token={lab.invite('weak@example.com')}")
    page.get_by_label("Password", exact=True).fill("short")
    expect(page.locator("#strength")).to_contain_text("at least 12 characters")
    page.get_by_label("Password", exact=True).fill("passwordpassword")
    expect(page.locator("#strength")).to_contain_text("too weak")
    page.get_by_label("PIN", exact=True).fill("123456")
    page.get_by_label("Confirm PIN", exact=True).fill("123456")
    with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.get_by_role("button", name="Enroll", exact=True).click()
    assert refused.value.status == 422
    assert "too weak" in page.locator("[role=alert]").inner_text()
    page.get_by_label("Password", exact=True).fill("Orchard velvet compass 31 tundra")
    expect(page.locator("#strength")).to_have_text("Strong enough.")
    page.get_by_label("PIN", exact=True).fill("123456")
    page.get_by_label("Confirm PIN", exact=True).fill("654321")
    page.get_by_role("button", name="Enroll", exact=True).click()
    assert "The two PINs differ." in page.locator("[role=alert]").inner_text()
    context.close()
