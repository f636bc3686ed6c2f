"""Account lifecycle in the browser: change PIN (a weak PIN refused with the reason),
password change keeping or ending the other sessions, and deleting a user from the
console with a confirmation that says it is final."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.ui.support import PASSWORD, PIN, enroll, login, new_context

NEW_PASSWORD = "Harbour quilt telescope 4 saffron"


def _person(lab, browser, email: str, admin: bool = False):
    context = new_context(browser)
    page = context.new_page()
    enroll(page, f"{lab.url}/enroll#token={lab.invite(email, admin)}")
    login(page, lab.url, email)
    return context, page


@pytest.mark.slow
def test_change_pin_refuses_a_weak_one_then_works(lab, browser):
    ctx, page = _person(lab, browser, "pin-changer@example.com")
    page.goto(lab.url + "/account")
    page.get_by_label("Current PIN", exact=True).fill(PIN)
    page.get_by_label("New PIN", exact=True).fill("123123")
    page.get_by_label("Confirm new PIN", exact=True).fill("123123")
    page.get_by_role("button", name="Change PIN", exact=True).click()
    expect(page.locator("[role=alert]")).to_contain_text("repeats its first digits")
    page.get_by_label("Current PIN", exact=True).fill(PIN)
    page.get_by_label("New PIN", exact=True).fill("730146")
    page.get_by_label("Confirm new PIN", exact=True).fill("730146")
    page.get_by_role("button", name="Change PIN", exact=True).click()
    expect(page.locator("[role=status]")).to_contain_text("PIN changed")
    ctx.clear_cookies()
    login(page, lab.url, "pin-changer@example.com", pin="730146")
    ctx.close()


@pytest.mark.slow
def test_password_change_keeps_this_session_and_can_keep_the_others(lab, browser):
    ctx, page = _person(lab, browser, "pw-changer@example.com")
    other_ctx = new_context(browser)
    other = other_ctx.new_page()
    login(other, lab.url, "pw-changer@example.com")
    page.goto(lab.url + "/account")
    page.get_by_label("Current password", exact=True).fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm new password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Log out my other sessions").uncheck()
    page.get_by_role("button", name="Change password", exact=True).click()
    expect(page.locator("[role=status]")).to_contain_text("Password changed")
    assert page.url.endswith("/account")
    other.goto(lab.url + "/account")
    assert other.url.endswith("/account"), "the other session was kept"
    ctx.close()
    other_ctx.close()


@pytest.mark.slow
def test_console_delete_says_it_is_final(lab, browser):
    admin_ctx, admin = _person(lab, browser, "deleter@example.com", admin=True)
    user_ctx, user = _person(lab, browser, "deleted@example.com")
    admin.goto(lab.url + "/admin/users")
    admin.get_by_role("link", name="Delete deleted@example.com").click()
    expect(admin.locator("#confirm-d")).to_contain_text("final")
    admin.get_by_role("button", name="Delete for good").click()
    expect(admin.locator("[role=status]")).to_contain_text("deleted for good")
    user.reload()
    assert user.url.endswith("/login")
    admin_ctx.close()
    user_ctx.close()


@pytest.mark.slow
def test_recovery_by_two_officers_in_the_browser(lab, browser):
    admin_ctx, admin = _person(lab, browser, "rec-admin@example.com", admin=True)
    o1_ctx, o1 = _person(lab, browser, "rec-officer1@example.com")
    o2_ctx, o2 = _person(lab, browser, "rec-officer2@example.com")
    user_ctx, user = _person(lab, browser, "rec-user@example.com")
    out = lab.cli(
        "recovery", "init", "--officers", "rec-officer1@example.com,rec-officer2@example.com", "--threshold", "2"
    )
    assert "threshold 2 of 2" in out
    login(user, lab.url, "rec-user@example.com")  # escrowed at this unlock
    shares = {}
    for name, page in (("o1", o1), ("o2", o2)):
        page.goto(lab.url + "/recovery")
        expect(page.locator("main")).to_contain_text("Recovery is enabled")
        page.get_by_role("button", name="Show my share once").click()
        shares[name] = page.locator("#recovery-share").inner_text().strip()
        page.goto(lab.url + "/recovery")
        expect(page.get_by_role("button", name="Show my share once")).to_have_count(0)
    admin.goto(lab.url + "/recovery")
    admin.get_by_label("Email", exact=True).fill("rec-user@example.com")
    admin.get_by_role("button", name="Open a recovery").click()
    link = admin.locator("#one-time-link").input_value()
    assert "/reset#token=cfr_" in link
    for name, page in (("o1", o1), ("o2", o2)):
        page.goto(lab.url + "/recovery")
        page.get_by_label("Your share, to approve the recovery of rec-user@example.com").fill(shares[name])
        page.get_by_role("button", name="Approve with my share").click()
        expect(page.locator("[role=status]")).to_contain_text("recorded")
    user.goto(link)
    user.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    user.get_by_label("New PIN", exact=True).fill("917364")
    user.get_by_label("Confirm new PIN", exact=True).fill("917364")
    user.get_by_role("button", name="Set password").click()
    user.wait_for_url("**/login")
    expect(user.locator("[role=status]")).to_contain_text("recovered")
    login(user, lab.url, "rec-user@example.com", password=NEW_PASSWORD, pin="917364")
    for ctx in (admin_ctx, o1_ctx, o2_ctx, user_ctx):
        ctx.close()
