"""Hostile and broken requests: every one is refused with a 4xx JSON error that
has a "detail", none answers 5xx, and none changes anything that is stored."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.models import Base, Item
from tests.api.test_permissions import DATABASES, shared_appliance
from tests.support import STRONG_PASSWORD, enroll, invite, login, new_user

MIB = 1024 * 1024


@dataclass(frozen=True)
class World:
    client: Any
    app: Any
    admin: dict[str, str]  # an application administrator who owns the vault
    member_id: str
    vault_id: str
    item_id: str


@pytest.fixture(scope="module", params=DATABASES)
def world(request, hsm_config, tmp_path_factory) -> Iterator[World]:
    with shared_appliance(request.param, hsm_config, tmp_path_factory.mktemp(f"bad-{request.param}")) as (c, a):
        admin = new_user(c, a, "admin@example.com", admin=True)
        member = new_user(c, a, "member@example.com")
        vault_id = c.post("/api/v1/vaults", json={"name": "Ops"}, headers=admin).json()["id"]
        r = c.post(
            f"/api/v1/vaults/{vault_id}/members", json={"email": "member@example.com", "role": "read"}, headers=admin
        )
        assert r.status_code == 201, r.text
        r = c.post(f"/api/v1/vaults/{vault_id}/items", json={"title": "db", "password": "pw-0"}, headers=admin)
        assert r.status_code == 201, r.text
        yield World(c, a, admin, c.get("/api/v1/me", headers=member).json()["id"], vault_id, r.json()["id"])


def row_counts(app: Any) -> dict[str, int]:
    with app.db.read() as db:
        return {
            t.name: db.execute(select(func.count()).select_from(t)).scalar_one() for t in Base.metadata.sorted_tables
        }


@contextmanager
def unchanged(world: World) -> Iterator[None]:
    """Every table has the same number of rows after the block as before it."""
    before = row_counts(world.app)
    yield
    assert row_counts(world.app) == before


def assert_error(r: Any, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert body.get("status_code") == r.status_code
    return body


# -- every endpoint that takes a JSON body ---------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # may name {vault}, {item}, {member}
    body: dict[str, Any]  # a valid body
    required: tuple[str, ...]
    auth: bool

    def url(self, w: World) -> str:
        return self.path.format(vault=w.vault_id, item=w.item_id, member=w.member_id)


ENDPOINTS = {
    "enroll": Endpoint(
        "POST",
        "/api/v1/enroll",
        {"token": "cfe_x", "password": STRONG_PASSWORD, "pin": "123456"},
        ("token", "password", "pin"),
        False,
    ),
    "login": Endpoint(
        "POST", "/api/v1/auth/login", {"email": "admin@example.com", "password": "wrong"}, ("email", "password"), False
    ),
    "unlock": Endpoint(
        "POST", "/api/v1/auth/unlock", {"login_ticket": "cft_x", "pin": "123456"}, ("login_ticket", "pin"), False
    ),
    "change_password": Endpoint(
        "POST",
        "/api/v1/auth/password",
        {"current_password": "wrong-one", "new_password": STRONG_PASSWORD + "!"},
        ("current_password", "new_password"),
        True,
    ),
    "complete_reset": Endpoint(
        "POST", "/api/v1/auth/password-reset", {"token": "cfr_x", "new_password": "x"}, ("token", "new_password"), False
    ),
    "invite_user": Endpoint("POST", "/api/v1/users", {"email": "new@example.com", "is_admin": False}, ("email",), True),
    "create_vault": Endpoint("POST", "/api/v1/vaults", {"name": "New"}, ("name",), True),
    "rename_vault": Endpoint("PATCH", "/api/v1/vaults/{vault}", {"name": "Renamed"}, ("name",), True),
    "add_member": Endpoint(
        "POST", "/api/v1/vaults/{vault}/members", {"email": "x@example.com", "role": "read"}, ("email", "role"), True
    ),
    "change_role": Endpoint("PATCH", "/api/v1/vaults/{vault}/members/{member}", {"role": "write"}, ("role",), True),
    "create_item": Endpoint(
        "POST",
        "/api/v1/vaults/{vault}/items",
        {"title": "t", "username": "u", "password": "p", "url": "https://x", "notes": "n"},
        ("title",),
        True,
    ),
    "update_item": Endpoint(
        "PUT",
        "/api/v1/items/{item}",
        {"title": "t", "version": 1, "username": "u", "password": "p", "url": "u", "notes": "n"},
        ("title", "version"),
        True,
    ),
    "patch_item": Endpoint(
        "PATCH",
        "/api/v1/items/{item}",
        {"version": 1, "title": "t", "username": "u", "password": "p", "url": "u", "notes": "n"},
        ("version",),
        True,
    ),
    "create_send": Endpoint(
        "POST",
        "/api/v1/sends",
        {"mode": "link", "secret": "s", "recipient_email": "r@example.com", "expires_in_hours": 1, "max_views": 1},
        ("mode",),
        True,
    ),
}


def wrong_values(value: Any) -> list[Any]:
    """Values of the wrong JSON type for a field whose valid value is ``value``.

    "true" and 1 for a boolean, "1" for an integer: Litestar's lax conversion used to
    accept them (is_admin="true" made an administrator); they must be refused."""
    if isinstance(value, bool):
        return ["true", 1, None, []]
    if isinstance(value, int):
        return ["1", 1.5, True, None, [1], {"v": 1}]
    return [123, True, ["x"], {"s": "x"}, 1.5]


def _cases() -> Iterator[Any]:
    for name, ep in ENDPOINTS.items():
        for raw in (b"{", b"{'a': 1}", b'{"a": 1,}', b"not json", b"\xff\xfe\x00", b'{"a": "\\ud800"'):
            yield pytest.param(name, "malformed", raw, id=f"{name}-malformed-{raw[:6]!r}")
        for shape in ([], "text", 42, None, [ep.body]):
            yield pytest.param(name, "not_an_object", json.dumps(shape).encode(), id=f"{name}-shape-{shape!r:.12}")
        for field, value in ep.body.items():
            for n, wrong in enumerate(wrong_values(value)):
                body = {**ep.body, field: wrong}
                yield pytest.param(name, "wrong_type", json.dumps(body).encode(), id=f"{name}-type-{field}-{n}")
        for field in ep.required:
            body = {k: v for k, v in ep.body.items() if k != field}
            yield pytest.param(name, "missing", json.dumps(body).encode(), id=f"{name}-missing-{field}")
        yield pytest.param(name, "missing", b"{}", id=f"{name}-empty-object")
        for extra in ({"extra": 1}, {"is_admin": True}, {"id": "0" * 32}, {"Title": "x"}):
            body = {**ep.body, **extra}
            if set(extra) <= set(ep.body):
                continue
            yield pytest.param(
                name, "unknown_field", json.dumps(body).encode(), id=f"{name}-unknown-{next(iter(extra))}"
            )


@pytest.mark.parametrize(("endpoint", "kind", "raw"), list(_cases()))
def test_malformed_bodies_are_400(world, endpoint, kind, raw):
    ep = ENDPOINTS[endpoint]
    headers = {"content-type": "application/json", **(world.admin if ep.auth else {})}
    with unchanged(world):
        r = world.client.request(ep.method, ep.url(world), content=raw, headers=headers)
        assert_error(r, 400)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("where", ["field", "padding"])
def test_bodies_over_one_mib_are_413(world, endpoint, where):
    ep = ENDPOINTS[endpoint]
    big = "x" * (MIB + 16)
    if where == "field":
        raw = json.dumps({**ep.body, ep.required[0]: big}).encode()
    else:  # a valid body, made large with insignificant whitespace
        raw = json.dumps(ep.body).encode() + b" " * (MIB + 16)
    assert len(raw) > MIB
    headers = {"content-type": "application/json", **(world.admin if ep.auth else {})}
    with unchanged(world):
        r = world.client.request(ep.method, ep.url(world), content=raw, headers=headers)
        assert_error(r, 413)


def _send_odd_strings(world: World, endpoint: str, odd_values: tuple[str, ...]) -> None:
    ep = ENDPOINTS[endpoint]
    headers = world.admin if ep.auth else {}
    for odd in odd_values:
        for field, value in ep.body.items():
            if not isinstance(value, str):
                continue
            r = world.client.request(ep.method, ep.url(world), json={**ep.body, field: odd}, headers=headers)
            assert r.status_code < 500, (field, repr(odd[:20]), r.status_code, r.text)
            if r.status_code >= 400:
                assert_error(r, r.status_code)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_odd_characters_in_strings_are_never_5xx(world, endpoint):
    _send_odd_strings(world, endpoint, ("\u202e\ufeff", "\U0001f512@example.com", "  ", "\\'\";--", "%s%n{0}"))


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_long_strings_are_never_5xx(world, endpoint):
    _send_odd_strings(world, endpoint, ("x" * 5000, "y" * 130 + "@example.com"))


def test_long_passphrases_within_the_limit_are_accepted(client, app):
    # Regression: zxcvbn raised ValueError above 72 characters, so such passwords answered 500.
    passphrase = "correct horse battery staple " * 3 + "and a tail of 42 words"  # 109 characters
    assert 72 < len(passphrase) <= 1024
    r = enroll(client, invite(app, "long@example.com"), password=passphrase)
    assert r.status_code == 201, r.text
    login(client, "long@example.com", password=passphrase)


def test_failed_logins_with_a_long_but_valid_email_are_counted(client, app):
    # Regression: the per-account rate-limit key overflowed String(128) on PostgreSQL (500, uncounted).
    email = "a" * 64 + "@" + "b" * 60 + ".example.com"
    new_user(client, app, email)
    attempts = app.settings.security.account_attempts
    statuses = [
        client.post("/api/v1/auth/login", json={"email": email, "password": "wrong"}).status_code
        for _ in range(attempts + 1)
    ]
    assert statuses == [401] * attempts + [429]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_nul_characters_in_strings_are_never_5xx(world, endpoint):
    # Regression: on PostgreSQL a NUL reaching a query raised DataError and answered 500.
    _send_odd_strings(world, endpoint, ("a\x00b@example.com", "\x00"))


# -- unknown ids --------------------------------------------------------------------------------------

ODD_IDS = [
    "0" * 32,
    secrets.token_hex(16),
    "x" * 300,
    "%C3%A9t%C3%A9",
    "'%20OR%20'1'='1",
    "1%3B%20DROP%20TABLE%20items",
]
NUL_IDS = ["%00", "a%00b", "0" * 31 + "%00"]


def _id_requests(w: World, unknown: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    v = w.vault_id
    return [
        ("GET", f"/api/v1/items/{unknown}", None),
        ("PUT", f"/api/v1/items/{unknown}", {"title": "t", "version": 1}),
        ("PATCH", f"/api/v1/items/{unknown}", {"password": "p", "version": 1}),
        ("DELETE", f"/api/v1/items/{unknown}", None),
        ("GET", f"/api/v1/vaults/{unknown}", None),
        ("PATCH", f"/api/v1/vaults/{unknown}", {"name": "n"}),
        ("DELETE", f"/api/v1/vaults/{unknown}", None),
        ("GET", f"/api/v1/vaults/{unknown}/items", None),
        ("POST", f"/api/v1/vaults/{unknown}/items", {"title": "t"}),
        ("GET", f"/api/v1/vaults/{unknown}/members", None),
        ("POST", f"/api/v1/vaults/{unknown}/members", {"email": "member@example.com", "role": "read"}),
        ("PATCH", f"/api/v1/vaults/{unknown}/members/{w.member_id}", {"role": "read"}),
        ("DELETE", f"/api/v1/vaults/{unknown}/members/{w.member_id}", None),
        ("PATCH", f"/api/v1/vaults/{v}/members/{unknown}", {"role": "read"}),
        ("DELETE", f"/api/v1/vaults/{v}/members/{unknown}", None),
        ("POST", f"/api/v1/users/{unknown}/unlock", None),
        ("POST", f"/api/v1/users/{unknown}/disable", None),
        ("POST", f"/api/v1/users/{unknown}/enable", None),
        ("POST", f"/api/v1/users/{unknown}/reset-password", None),
    ]


@pytest.mark.parametrize("unknown", ODD_IDS, ids=[f"id{n}" for n in range(len(ODD_IDS))])
def test_unknown_ids_are_404(world, unknown):
    with unchanged(world):
        for method, url, body in _id_requests(world, unknown):
            r = world.client.request(method, url, json=body, headers=world.admin)
            assert_error(r, 404)


@pytest.mark.parametrize("unknown", NUL_IDS, ids=[f"nul{n}" for n in range(len(NUL_IDS))])
def test_ids_with_nul_are_404(world, unknown):
    with unchanged(world):
        for method, url, body in _id_requests(world, unknown):
            r = world.client.request(method, url, json=body, headers=world.admin)
            assert_error(r, 404)


def test_unknown_member_email_is_404(world):
    r = world.client.post(
        f"/api/v1/vaults/{world.vault_id}/members",
        json={"email": "nobody@example.com", "role": "read"},
        headers=world.admin,
    )
    assert_error(r, 404)


# -- bearer tokens ------------------------------------------------------------------------------------


def _forged_headers(w: World) -> dict[str, dict[str, str]]:
    real = w.admin["Authorization"].split(" ", 1)[1]
    raw = base64.urlsafe_b64decode(real[4:] + "=" * (-len(real[4:]) % 4))
    wrong_secret = "cfs_" + base64.urlsafe_b64encode(raw[:16] + secrets.token_bytes(32)).rstrip(b"=").decode()
    random_session = "cfs_" + base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "scheme_only": {"Authorization": "Bearer"},
        "scheme_space": {"Authorization": "Bearer   "},
        "basic": {"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="},
        "garbage": {"Authorization": "Bearer garbage"},
        "bad_base64": {"Authorization": "Bearer cfs_!!!!not-base64!!!!"},
        "short": {"Authorization": "Bearer cfs_AAAA"},
        "long": {"Authorization": "Bearer cfs_" + "A" * 10_000},
        "other_prefix": {"Authorization": "Bearer " + "cft_" + real[4:]},
        "truncated": {"Authorization": "Bearer " + real[:-1]},
        "appended": {"Authorization": "Bearer " + real + "A"},
        "wrong_secret": {"Authorization": "Bearer " + wrong_secret},
        "random_session": {"Authorization": "Bearer " + random_session},
        "two_tokens": {"Authorization": f"Bearer {real} {real}"},
    }


AUTH_REQUESTS = [
    ("GET", "/api/v1/me", None),
    ("GET", "/api/v1/ping", None),
    ("POST", "/api/v1/auth/logout", None),
    ("POST", "/api/v1/auth/password", {"current_password": STRONG_PASSWORD, "new_password": STRONG_PASSWORD + "!"}),
    ("GET", "/api/v1/users", None),
    ("POST", "/api/v1/users", {"email": "new@example.com"}),
    ("GET", "/api/v1/vaults", None),
    ("POST", "/api/v1/vaults", {"name": "x"}),
    ("GET", "/api/v1/vaults/{vault}", None),
    ("PATCH", "/api/v1/vaults/{vault}", {"name": "x"}),
    ("DELETE", "/api/v1/vaults/{vault}", None),
    ("GET", "/api/v1/vaults/{vault}/members", None),
    ("POST", "/api/v1/vaults/{vault}/members", {"email": "member@example.com", "role": "read"}),
    ("PATCH", "/api/v1/vaults/{vault}/members/{member}", {"role": "admin"}),
    ("DELETE", "/api/v1/vaults/{vault}/members/{member}", None),
    ("GET", "/api/v1/vaults/{vault}/items", None),
    ("POST", "/api/v1/vaults/{vault}/items", {"title": "x"}),
    ("GET", "/api/v1/items/{item}", None),
    ("PUT", "/api/v1/items/{item}", {"title": "x", "version": 1}),
    ("PATCH", "/api/v1/items/{item}", {"password": "x", "version": 1}),
    ("DELETE", "/api/v1/items/{item}", None),
    ("POST", "/api/v1/users/{member}/disable", None),
]

FORGERIES = [
    "none",
    "empty",
    "scheme_only",
    "scheme_space",
    "basic",
    "garbage",
    "bad_base64",
    "short",
    "long",
    "other_prefix",
    "truncated",
    "appended",
    "wrong_secret",
    "random_session",
    "two_tokens",
]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_missing_forged_or_garbage_bearer_tokens_are_401(world, forgery):
    headers = _forged_headers(world)[forgery]
    with unchanged(world):
        for method, path, body in AUTH_REQUESTS:
            url = path.format(vault=world.vault_id, item=world.item_id, member=world.member_id)
            r = world.client.request(method, url, json=body, headers=headers)
            body_out = assert_error(r, 401)
            assert body_out["error"] == "unauthorized"
            assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    # The real session was not disturbed by any of it.
    assert world.client.get("/api/v1/me", headers=world.admin).status_code == 200


def test_logged_out_token_is_401(world):
    headers = login(world.client, "member@example.com")
    assert world.client.get(f"/api/v1/vaults/{world.vault_id}/items", headers=headers).status_code == 200
    assert world.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    before = row_counts(world.app)
    for method, path, body in AUTH_REQUESTS:
        url = path.format(vault=world.vault_id, item=world.item_id, member=world.member_id)
        assert_error(world.client.request(method, url, json=body, headers=headers), 401)
    assert row_counts(world.app) == before


# -- state-dependent refusals ---------------------------------------------------------------------------


def test_stale_version_is_409_and_leaves_the_item_unchanged(world):
    c, admin = world.client, world.admin
    r = c.post(f"/api/v1/vaults/{world.vault_id}/items", json={"title": "stale", "password": "v1-pass"}, headers=admin)
    item_id = r.json()["id"]
    r = c.put(f"/api/v1/items/{item_id}", json={"title": "stale", "password": "v2-pass", "version": 1}, headers=admin)
    assert r.status_code == 200 and r.json()["version"] == 2
    with world.app.db.read() as db:
        row = db.get(Item, item_id)
        stored = (row.version, row.password_ct, row.title_ct, row.updated_at)
    before = row_counts(world.app)
    for stale in (1, 3, 99, 2**31):
        r = c.put(
            f"/api/v1/items/{item_id}", json={"title": "lost", "password": "v3-pass", "version": stale}, headers=admin
        )
        body = assert_error(r, 409)
        assert body["error"] == "conflict"
    for bad in (0, -1):
        assert_error(c.put(f"/api/v1/items/{item_id}", json={"title": "lost", "version": bad}, headers=admin), 400, 422)
    assert row_counts(world.app) == before
    with world.app.db.read() as db:
        row = db.get(Item, item_id)
        assert (row.version, row.password_ct, row.title_ct, row.updated_at) == stored
    got = c.get(f"/api/v1/items/{item_id}", headers=admin).json()
    assert (got["version"], got["title"], got["password"]) == (2, "stale", "v2-pass")


def test_enrollment_token_works_once(world):
    c = world.client
    token = invite(world.app, "once@example.com")
    r = enroll(c, token)
    assert r.status_code == 201, r.text
    before = row_counts(world.app)
    for password in (STRONG_PASSWORD, "another strong passphrase 77"):
        body = assert_error(enroll(c, token, password=password, pin="654321"), 400, 401, 403, 404, 409, 410)
        assert "token" in body["detail"]
    assert_error(enroll(c, "cfe_" + secrets.token_urlsafe(32)), 400, 401, 403, 404, 409, 410)
    assert row_counts(world.app) == before
    login(c, "once@example.com")  # the first enrollment's password and PIN still work


def test_error_bodies_are_json_with_detail_for_routing_errors(world):
    c = world.client
    assert_error(c.get("/api/v1/no-such-route", headers=world.admin), 404)
    assert_error(c.request("PATCH", "/api/v1/me", headers=world.admin), 405)
    r = c.post(
        "/api/v1/vaults",
        content=b"name=x",
        headers={"content-type": "application/x-www-form-urlencoded", **world.admin},
    )
    assert_error(r, 400, 415)
