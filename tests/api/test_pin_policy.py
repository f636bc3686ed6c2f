"""The PIN policy: trivial PINs refused with the reason, at enrollment and on change;
PINs chosen before the policy keep working and the unlock says they are weak. And
the password change's "log out my other sessions" option."""

from __future__ import annotations

import pytest

import appliance.accounts
from appliance.pin_policy import COMMON, COMMON_PINS, DOUBLED, REPEATED, RUN, pin_weakness
from tests.support import PIN, STRONG_PASSWORD, enroll, invite, login, new_user

# Markert, Bailey, Golla, Dürmuth, Aviv (IEEE S&P 2020): the ten most common 6-digit PINs.
MARKERT_TOP_10 = ("123456", "654321", "111111", "000000", "123123", "666666", "121212", "112233", "789456", "159753")


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("000000", REPEATED),
        ("777777", REPEATED),
        ("123456", RUN),
        ("654321", RUN),
        ("345678", RUN),
        ("890123", RUN),
        ("210987", RUN),
        ("123123", DOUBLED),
        ("407407", DOUBLED),
        ("121212", DOUBLED),
        ("159753", COMMON),
        ("112233", COMMON),
        ("789456", COMMON),
        ("102030", COMMON),
    ],
)
def test_trivial_pins_are_named_with_their_reason(pin, reason):
    assert pin_weakness(pin) == reason


@pytest.mark.parametrize("pin", [PIN, "193746", "582914", "730146", "917364", "204857"])
def test_ordinary_pins_pass(pin):
    assert pin_weakness(pin) is None


def test_the_shipped_list_is_large_and_holds_the_published_top_ten():
    assert len(COMMON_PINS) >= 100 and len(set(COMMON_PINS)) == len(COMMON_PINS)
    assert all(len(p) == 6 and p.isdigit() for p in COMMON_PINS)
    assert set(MARKERT_TOP_10) <= set(COMMON_PINS[:25])


def test_enrollment_refuses_a_trivial_pin_with_the_reason(client, app):
    token = invite(app, "u@example.com")
    for pin, reason in (("123456", RUN), ("123123", DOUBLED), ("159753", COMMON), ("999999", REPEATED)):
        r = enroll(client, token, pin=pin)
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"]
    assert enroll(client, token).status_code == 201  # the token was not used up


def test_pin_change_refuses_a_trivial_pin_and_changes_nothing(client, app):
    headers = new_user(client, app, "u@example.com")
    r = client.post("/api/v1/me/pin", json={"current_pin": PIN, "new_pin": "654321"}, headers=headers)
    assert r.status_code == 422 and RUN in r.json()["detail"]
    r = client.post("/api/v1/me/pin", json={"current_pin": PIN, "new_pin": "112233"}, headers=headers)
    assert r.status_code == 422 and COMMON in r.json()["detail"]
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    login(client, "u@example.com")  # the PIN did not change


def _unlock(client, email, pin):
    ticket = client.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD}).json()
    return client.post("/api/v1/auth/unlock", json={"login_ticket": ticket["login_ticket"], "pin": pin})


def test_a_weak_pin_set_before_the_policy_keeps_working_and_the_unlock_says_so(client, app, monkeypatch):
    monkeypatch.setattr(appliance.accounts, "check_pin_policy", lambda pin: None)  # an older release
    assert enroll(client, invite(app, "old@example.com"), pin="123123").status_code == 201
    monkeypatch.undo()
    r = _unlock(client, "old@example.com", "123123")
    assert r.status_code == 200 and r.json()["pin_weak"] is True
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    r = client.post("/api/v1/me/pin", json={"current_pin": "123123", "new_pin": "582914"}, headers=headers)
    assert r.status_code == 204, r.text
    r = _unlock(client, "old@example.com", "582914")
    assert r.status_code == 200 and r.json()["pin_weak"] is False


def test_password_change_can_keep_the_other_sessions(client, app):
    headers = new_user(client, app, "u@example.com")
    other = login(client, "u@example.com")
    new = "another long passphrase for coffre 77"
    r = client.post(
        "/api/v1/auth/password",
        json={"current_password": STRONG_PASSWORD, "new_password": new, "end_other_sessions": False},
        headers=headers,
    )
    assert r.status_code == 204, r.text
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.get("/api/v1/me", headers=other).status_code == 200
    login(client, "u@example.com", password=new)
