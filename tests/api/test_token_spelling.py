"""Every bearer value is accepted in exactly one spelling: the one the server handed
out. A lenient base64 decoder maps `+`/`/` to the same bytes as `-`/`_`, accepts `=`
padding and skips characters it does not know; none of that may name a session."""

from __future__ import annotations

import base64

import pytest

from appliance.tokens import SessionToken
from tests.support import PIN, STRONG_PASSWORD, invite, login, new_user


def _variants(token: str) -> dict[str, str]:
    """Spellings a lenient decoder maps to the same bytes as ``token``."""
    body = token[4:]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    std = base64.b64encode(raw).decode()  # `+` and `/` where the token has `-` and `_`
    out = {
        "padded": token + "==",
        "one_pad": token + "=",
        "std_alphabet": "cfs_" + std.rstrip("="),
        "inner_space": token[:20] + " " + token[20:],
        "inner_newline": token[:20] + "\n" + token[20:],
        "inner_dot": token[:20] + "." + token[20:],
        "inner_percent": token[:20] + "%" + token[20:],
        "inner_bang": token[:30] + "!" + token[30:],
        "trailing_space": token + " ",
        "leading_space": " " + token,
        "upper_prefix": "CFS_" + body,
        "nbsp": token[:10] + "\u00a0" + token[10:],
        "fullwidth_digit": token.replace(next(c for c in body if c.isdigit()), "\uff11", 1)
        if any(c.isdigit() for c in body)
        else token + "\uff11",
    }
    # Make sure the std-alphabet variant really differs (a token without - or _ would not).
    if out["std_alphabet"] == token:
        out.pop("std_alphabet")
    return out


def _token_with_url_safe_chars() -> str:
    while True:
        token = SessionToken.new().encode()
        if "-" in token[4:] and "_" in token[4:]:
            return token


def test_parse_accepts_only_the_encoded_spelling():
    token = _token_with_url_safe_chars()
    parsed = SessionToken.parse(token)
    assert parsed is not None and parsed.encode() == token
    for name, variant in _variants(token).items():
        assert SessionToken.parse(variant) is None, name


def test_parse_refuses_non_strings_and_other_lengths():
    token = SessionToken.new().encode()
    for bad in (token[:-1], token + "A", token[:-4], "cfs_", "", "cfs_" + "A" * 65, None, 42, token.encode()):
        assert SessionToken.parse(bad) is None, bad  # type: ignore[arg-type]


def test_a_real_session_answers_only_to_its_own_spelling(client, app):
    headers = new_user(client, app, "spell@example.com")
    token = headers["Authorization"].split(" ", 1)[1]
    # Find a session whose token has both `-` and `_`, so the `+`/`/` variant is tested for real.
    tries = 0
    while not ("-" in token[4:] and "_" in token[4:]) and tries < 40:
        headers = login(client, "spell@example.com")
        token = headers["Authorization"].split(" ", 1)[1]
        tries += 1
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    for name, variant in _variants(token).items():
        try:
            r = client.get("/api/v1/me", headers={"Authorization": "Bearer " + variant})
        except Exception:  # a header value the HTTP client itself refuses to send (e.g. a newline)
            continue
        assert r.status_code == 401, (name, r.status_code, r.text)
    for name, header in {
        "two_spaces": "Bearer  " + token,
        "tab": "Bearer\t" + token,
        "no_scheme": token,
    }.items():
        assert client.get("/api/v1/me", headers={"Authorization": header}).status_code == 401, name
    assert client.get("/api/v1/me", headers={"Authorization": "bearer " + token}).status_code == 200


@pytest.mark.parametrize("kind", ["enrollment", "login_ticket"])
def test_one_time_tokens_and_tickets_answer_only_to_their_own_spelling(client, app, kind):
    if kind == "enrollment":
        token = invite(app, "once@example.com")

        def use(value: str) -> int:
            body = {"token": value, "password": STRONG_PASSWORD, "pin": PIN}
            return client.post("/api/v1/enroll", json=body).status_code

        ok = 201
    else:
        new_user(client, app, "ticket@example.com")
        token = client.post(
            "/api/v1/auth/login", json={"email": "ticket@example.com", "password": STRONG_PASSWORD}
        ).json()["login_ticket"]

        def use(value: str) -> int:
            return client.post("/api/v1/auth/unlock", json={"login_ticket": value, "pin": PIN}).status_code

        ok = 200
    prefix, body = token[:4], token[4:]
    raw = base64.urlsafe_b64decode(body + "=")
    variants = [
        token + "=",
        prefix + base64.b64encode(raw).decode().rstrip("="),
        token[:12] + " " + token[12:],
        token[:12] + "." + token[12:],
        prefix.upper() + body,
        " " + token,
    ]
    for variant in variants:
        if variant != token:
            assert use(variant) in (400, 401), variant
    assert use(token) == ok


def test_ids_are_accepted_only_in_lowercase_hex(client, app):
    headers = new_user(client, app, "ids@example.com")
    vault_id = client.post("/api/v1/vaults", json={"name": "v"}, headers=headers).json()["id"]
    item_id = client.post(f"/api/v1/vaults/{vault_id}/items", json={"title": "t"}, headers=headers).json()["id"]
    user_id = client.get("/api/v1/me", headers=headers).json()["id"]
    assert client.get(f"/api/v1/items/{item_id}", headers=headers).status_code == 200
    for spelled in (str.upper, lambda s: s[:8] + "-" + s[8:], lambda s: " " + s, lambda s: s + "%20"):
        assert client.get(f"/api/v1/vaults/{spelled(vault_id)}", headers=headers).status_code == 404
        assert client.get(f"/api/v1/items/{spelled(item_id)}", headers=headers).status_code == 404
        r = client.patch(
            f"/api/v1/vaults/{vault_id}/members/{spelled(user_id)}", json={"role": "read"}, headers=headers
        )
        assert r.status_code == 404
