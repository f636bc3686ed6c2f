"""Enrollment, two-step login, lockout, rate limits, sessions and their end."""

from __future__ import annotations

import statistics
import time

import pytest

from tests.support import PIN, STRONG_PASSWORD, enroll, invite, login, new_user


def _ticket(client, email, password=STRONG_PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def _unlock(client, ticket, pin=PIN):
    return client.post("/api/v1/auth/unlock", json={"login_ticket": ticket, "pin": pin})


def test_enrollment_token_is_single_use_and_expires(client, app, clock):
    token = invite(app, "a@example.com")
    assert enroll(client, token).status_code == 201
    again = enroll(client, token)
    assert again.status_code == 400
    assert "invalid, expired or already used" in again.json()["detail"]
    late = invite(app, "b@example.com")
    clock.advance(72 * 3600 + 1)
    assert enroll(client, late).status_code == 400
    assert enroll(client, "cfe_forged-token-value").status_code == 400


@pytest.mark.parametrize(
    ("password", "pin", "fragment"),
    [
        ("short1!", PIN, "at least 12 characters"),
        ("passwordpassword", PIN, "too weak"),
        (STRONG_PASSWORD, "12345", "6 digits"),
        (STRONG_PASSWORD, "abcdef", "6 digits"),
        (STRONG_PASSWORD, "1234567", "6 digits"),
    ],
)
def test_enrollment_rejects_weak_secrets_and_keeps_the_token(client, app, password, pin, fragment):
    token = invite(app, "weak@example.com")
    r = enroll(client, token, password, pin)
    assert r.status_code == 422
    assert fragment in r.json()["detail"]
    assert enroll(client, token).status_code == 201  # the token was not consumed


def test_login_is_two_steps_and_tickets_are_single_use(client, app):
    new_user(client, app, "u@example.com")
    r = _ticket(client, "u@example.com")
    assert r.status_code == 200
    assert set(r.json()) == {"login_ticket"}
    ticket = r.json()["login_ticket"]
    ok = _unlock(client, ticket)
    assert ok.status_code == 200
    assert set(ok.json()) == {"token", "expires_at", "pin_weak"}
    assert ok.json()["pin_weak"] is False
    assert _unlock(client, ticket).status_code == 401  # replayed ticket


def test_login_ticket_expires(client, app, clock):
    new_user(client, app, "u@example.com")
    ticket = _ticket(client, "u@example.com").json()["login_ticket"]
    clock.advance(121)
    assert _unlock(client, ticket).status_code == 401


def test_unknown_email_and_wrong_password_answer_the_same(client, app):
    new_user(client, app, "known@example.com")
    a = _ticket(client, "known@example.com", "wrong password entirely 9")
    b = _ticket(client, "nobody@example.com", "wrong password entirely 9")
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")


def test_unknown_email_and_wrong_password_take_the_same_time(client, app):
    new_user(client, app, "known@example.com")

    def timed(email: str) -> float:
        start = time.perf_counter()
        _ticket(client, email, "wrong password entirely 9")
        return time.perf_counter() - start

    known, unknown = [], []
    for _ in range(6):
        known.append(timed("known@example.com"))
        unknown.append(timed("nobody@example.com"))
    # Both paths run the pepper HMAC and one Argon2id verification.
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 < ratio < 2.0, (known, unknown)


def test_five_wrong_pins_lock_the_account_until_an_admin_unlocks(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    user = new_user(client, app, "u@example.com")
    codes = [
        _unlock(client, _ticket(client, "u@example.com").json()["login_ticket"], "000000").status_code for _ in range(5)
    ]
    assert codes == [401, 401, 401, 401, 423]
    # The open session was revoked by the lock, and the right PIN no longer helps.
    assert client.get("/api/v1/me", headers=user).status_code == 401
    assert _ticket(client, "u@example.com").status_code == 423
    users = client.get("/api/v1/users", headers=admin).json()
    target = next(u for u in users if u["email"] == "u@example.com")
    assert target["locked"] is True
    r = client.post(f"/api/v1/users/{target['id']}/unlock", headers=admin)
    assert r.status_code == 200 and r.json()["locked"] is False
    login(client, "u@example.com")


def test_a_right_pin_resets_the_failure_count(client, app):
    new_user(client, app, "u@example.com")
    for _ in range(4):
        assert _unlock(client, _ticket(client, "u@example.com").json()["login_ticket"], "000000").status_code == 401
    login(client, "u@example.com")
    for _ in range(4):
        assert _unlock(client, _ticket(client, "u@example.com").json()["login_ticket"], "000000").status_code == 401
    login(client, "u@example.com")


def test_password_attempts_are_rate_limited_per_account(client, app, clock):
    new_user(client, app, "u@example.com")
    codes = [_ticket(client, "u@example.com", f"wrong password number {i}").status_code for i in range(11)]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    r = _ticket(client, "u@example.com")  # even the right password waits
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    clock.advance(15 * 60 + 1)
    assert _ticket(client, "u@example.com").status_code == 200


def test_password_attempts_are_rate_limited_per_address(client, app, clock):
    codes = [_ticket(client, f"user{i}@example.com", "wrong password entirely 9").status_code for i in range(31)]
    assert codes[:30] == [401] * 30
    assert codes[30] == 429
    clock.advance(61)
    assert _ticket(client, "someone@example.com", "wrong password entirely 9").status_code == 401


def test_forwarded_address_is_believed_only_from_trusted_proxies(client, app):
    # The test client's peer ("testclient") is not a trusted proxy: the header is ignored,
    # so spoofing X-Forwarded-For cannot escape the per-address limit.
    codes = [
        client.post(
            "/api/v1/auth/login",
            json={"email": f"x{i}@example.com", "password": "nope nope nope"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        ).status_code
        for i in range(31)
    ]
    assert codes[-1] == 429


def test_session_idle_timeout_and_absolute_lifetime(client, app, clock):
    headers = new_user(client, app, "u@example.com")
    clock.advance(29 * 60)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    clock.advance(31 * 60)  # idle for more than 30 minutes
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    headers = login(client, "u@example.com")
    for _ in range(25):  # active every 29 minutes, but for more than 12 hours
        clock.advance(29 * 60)
        if client.get("/api/v1/me", headers=headers).status_code != 200:
            break
    assert clock.now and client.get("/api/v1/me", headers=headers).status_code == 401


def test_logout_revokes_the_session_server_side(client, app):
    headers = new_user(client, app, "u@example.com")
    other = login(client, "u@example.com")
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.get("/api/v1/me", headers=other).status_code == 200  # only that session


def test_forged_and_malformed_tokens_are_refused(client, app):
    headers = new_user(client, app, "u@example.com")
    token = headers["Authorization"].split()[1]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for value in (
        f"Bearer {forged}",
        "Bearer cfs_",
        "Bearer garbage",
        "Basic dXNlcjpwYXNz",
        "",
        "Bearer " + "A" * 5000,
    ):
        r = client.get("/api/v1/me", headers={"Authorization": value})
        assert r.status_code == 401, value
        assert "detail" in r.json()


def test_password_change_needs_the_current_password_and_ends_the_other_sessions(client, app):
    headers = new_user(client, app, "u@example.com")
    other = login(client, "u@example.com")
    new = "another long passphrase for coffre 77"
    r = client.post(
        "/api/v1/auth/password", json={"current_password": "wrong wrong wrong 1", "new_password": new}, headers=headers
    )
    assert r.status_code == 403
    r = client.post(
        "/api/v1/auth/password", json={"current_password": STRONG_PASSWORD, "new_password": new}, headers=headers
    )
    assert r.status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # this session stays
    assert client.get("/api/v1/me", headers=other).status_code == 401  # the others end (the default)
    assert _ticket(client, "u@example.com").status_code == 401
    login(client, "u@example.com", password=new)


def test_admin_password_reset_opens_nothing_without_the_pin(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    user = new_user(client, app, "u@example.com")
    user_id = client.get("/api/v1/me", headers=user).json()["id"]
    r = client.post(f"/api/v1/users/{user_id}/reset-password", headers=admin)
    assert r.status_code == 200
    reset = r.json()["reset_token"]
    assert client.get("/api/v1/me", headers=user).status_code == 401  # sessions ended
    new = "reset passphrase chosen by user 31"
    assert client.post("/api/v1/auth/password-reset", json={"token": reset, "new_password": new}).status_code == 204
    assert client.post("/api/v1/auth/password-reset", json={"token": reset, "new_password": new}).status_code == 400
    ticket = _ticket(client, "u@example.com", new).json()["login_ticket"]
    assert _unlock(client, ticket, "000000").status_code == 401  # still needs the PIN
    login(client, "u@example.com", password=new)


def test_disabling_a_user_kills_their_sessions_at_once(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    user = new_user(client, app, "u@example.com")
    user_id = client.get("/api/v1/me", headers=user).json()["id"]
    assert client.post(f"/api/v1/users/{user_id}/disable", headers=admin).status_code == 200
    assert client.get("/api/v1/me", headers=user).status_code == 401
    refused = _ticket(client, "u@example.com")  # a disabled account looks like a wrong password
    assert refused.status_code == 401
    assert refused.json() == _ticket(client, "nobody@example.com", "wrong password entirely 9").json()
    assert client.post(f"/api/v1/users/{user_id}/enable", headers=admin).status_code == 200
    login(client, "u@example.com")


def test_user_administration_is_for_admins_only(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    user = new_user(client, app, "u@example.com")
    assert client.get("/api/v1/users", headers=user).status_code == 403
    assert client.post("/api/v1/users", json={"email": "x@example.com"}, headers=user).status_code == 403
    r = client.post("/api/v1/users", json={"email": "New@Example.com", "is_admin": False}, headers=admin)
    assert r.status_code == 201
    body = r.json()
    assert body["email"] == "new@example.com" and body["enrollment_token"].startswith("cfe_")
    assert client.post("/api/v1/users", json={"email": "u@example.com"}, headers=admin).status_code == 409
    assert enroll(client, body["enrollment_token"]).status_code == 201


def test_admin_unlock_cannot_become_a_pin_guessing_loop(client, app):
    admin = new_user(client, app, "admin@example.com", admin=True)
    new_user(client, app, "u@example.com")
    user_id = next(u["id"] for u in client.get("/api/v1/users", headers=admin).json() if u["email"] == "u@example.com")
    answers = []
    for _ in range(4):  # 4 x 5 wrong PINs = the 20 allowed in total
        for _ in range(5):
            _unlock(client, _ticket(client, "u@example.com").json()["login_ticket"], "000000")
        answers.append(client.post(f"/api/v1/users/{user_id}/unlock", headers=admin).status_code)
    assert answers == [200, 200, 200, 409]
    assert _ticket(client, "u@example.com").status_code == 423


def test_parallel_unlocks_with_one_ticket_count_once(client, app):
    from concurrent.futures import ThreadPoolExecutor

    new_user(client, app, "u@example.com")
    ticket = _ticket(client, "u@example.com").json()["login_ticket"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _unlock(client, ticket, "000000"), range(8)))
    assert [r.status_code for r in answers] == [401] * 8
    assert sum(r.json()["detail"] == "wrong PIN" for r in answers) == 1  # the ticket was used once
    from sqlalchemy import select

    from appliance.models import User

    with app.db.read() as db:
        user = db.execute(select(User).where(User.email == "u@example.com")).scalar_one()
    assert user.failed_pin_count == 1


def test_parallel_wrong_passwords_cannot_outrun_the_account_limit(client, app):
    from concurrent.futures import ThreadPoolExecutor

    new_user(client, app, "u@example.com")
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda i: _ticket(client, "u@example.com", f"wrong guess number {i}").status_code, range(20))
        )
    assert codes.count(401) == 10
    assert codes.count(429) == 10


def test_argon2_does_not_hold_an_hsm_session(sqlite_url, hsm_config, tmp_path, clock):
    """Two logins at once with one HSM session and a 50 ms acquire timeout: the
    session is held for the pepper HMAC only, never during Argon2id (~170 ms)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from litestar.testing import TestClient

    from appliance import schema
    from appliance.config import CryptoSettings
    from appliance.core import Appliance
    from tests.conftest import make_settings
    from web.app import create_app

    settings = make_settings(sqlite_url, replace(hsm_config, pool_size=1, acquire_timeout=0.05), tmp_path)
    settings = replace(settings, crypto=replace(CryptoSettings(), rsa_bits=2048))  # production Argon2id
    app = Appliance(settings, clock=clock)
    schema.upgrade(app.db.engine)
    try:
        with TestClient(create_app(app)) as client:
            new_user(client, app, "a@example.com")
            new_user(client, app, "b@example.com")
            with ThreadPoolExecutor(2) as pool:
                codes = list(pool.map(lambda e: _ticket(client, e).status_code, ["a@example.com", "b@example.com"]))
            assert codes == [200, 200]
    finally:
        app.close()
