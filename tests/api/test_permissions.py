"""Vault roles over every vault and item operation.

The matrix is generated: roles x operations, with the expected status computed
from one rule table (which role each operation needs), never listed by hand.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from appliance.models import Item, Vault, VaultMember
from tests.conftest import build_app
from tests.support import FakeClock, new_user, postgres_url_or_reason
from web.app import create_app

# -- the rule table -------------------------------------------------------------------

RANK = {"none": 0, "read": 1, "write": 2, "admin": 3}
ROLES = ("admin", "write", "read", "none")  # "none": not a member of the vault


@dataclass(frozen=True)
class Ctx:
    vault_id: str
    item_id: str
    owner_id: str
    newcomer_email: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Operation:
    needs: str  # the lowest vault role allowed to do it
    success: int  # the status when allowed
    mutates: bool  # whether an allowed call changes stored state
    call: Callable[[Any, Ctx], Any]


OPERATIONS: dict[str, Operation] = {
    "list_items": Operation(
        "read", 200, False, lambda c, x: c.get(f"/api/v1/vaults/{x.vault_id}/items", headers=x.headers)
    ),
    "get_item": Operation("read", 200, False, lambda c, x: c.get(f"/api/v1/items/{x.item_id}", headers=x.headers)),
    "list_members": Operation(
        "read", 200, False, lambda c, x: c.get(f"/api/v1/vaults/{x.vault_id}/members", headers=x.headers)
    ),
    "create_item": Operation(
        "write",
        201,
        True,
        lambda c, x: c.post(
            f"/api/v1/vaults/{x.vault_id}/items", json={"title": "new", "password": "n3w-pass"}, headers=x.headers
        ),
    ),
    "update_item": Operation(
        "write",
        200,
        True,
        lambda c, x: c.put(
            f"/api/v1/items/{x.item_id}", json={"title": "db2", "password": "changed", "version": 1}, headers=x.headers
        ),
    ),
    "delete_item": Operation(
        "write", 204, True, lambda c, x: c.delete(f"/api/v1/items/{x.item_id}", headers=x.headers)
    ),
    "add_member": Operation(
        "admin",
        201,
        True,
        lambda c, x: c.post(
            f"/api/v1/vaults/{x.vault_id}/members", json={"email": x.newcomer_email, "role": "read"}, headers=x.headers
        ),
    ),
    "change_role": Operation(
        "admin",
        200,
        True,
        lambda c, x: c.patch(
            f"/api/v1/vaults/{x.vault_id}/members/{x.owner_id}", json={"role": "write"}, headers=x.headers
        ),
    ),
    "remove_member": Operation(
        "admin",
        204,
        True,
        lambda c, x: c.delete(f"/api/v1/vaults/{x.vault_id}/members/{x.owner_id}", headers=x.headers),
    ),
    "rename_vault": Operation(
        "admin",
        200,
        True,
        lambda c, x: c.patch(f"/api/v1/vaults/{x.vault_id}", json={"name": "Renamed"}, headers=x.headers),
    ),
    "delete_vault": Operation(
        "admin", 204, True, lambda c, x: c.delete(f"/api/v1/vaults/{x.vault_id}", headers=x.headers)
    ),
}


def expected_status(role: str, operation: str) -> int:
    if role == "none":
        return 404  # existence hidden from non-members
    op = OPERATIONS[operation]
    return op.success if RANK[role] >= RANK[op.needs] else 403


MATRIX = [pytest.param(role, op, id=f"{role}-{op}") for role, op in itertools.product(ROLES, OPERATIONS)]


def test_rule_table_is_what_the_brief_says():
    """A sanity check of the generator itself, on a few well-known corners."""
    assert len(MATRIX) == len(ROLES) * len(OPERATIONS) == 44
    assert expected_status("read", "get_item") == 200
    assert expected_status("read", "create_item") == 403
    assert expected_status("write", "delete_item") == 204
    assert expected_status("write", "add_member") == 403
    assert expected_status("admin", "delete_vault") == 204
    assert {expected_status("none", op) for op in OPERATIONS} == {404}


# -- helpers --------------------------------------------------------------------------


def snapshot(app: Any) -> dict[str, Any]:
    """Everything an operation of the matrix could change, read from the database."""
    with app.db.read() as db:
        return {
            "vaults": sorted((v.id, v.name, v.key_version) for v in db.execute(select(Vault)).scalars()),
            "members": sorted(
                (m.vault_id, m.user_id, m.role, m.key_version, m.wrapped_key)
                for m in db.execute(select(VaultMember)).scalars()
            ),
            "items": sorted(
                (i.id, i.vault_id, i.version, i.key_version, i.password_ct) for i in db.execute(select(Item)).scalars()
            ),
        }


def user_id(client: Any, headers: dict[str, str]) -> str:
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def make_vault(client: Any, headers: dict[str, str], name: str = "Team") -> str:
    r = client.post("/api/v1/vaults", json={"name": name}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def make_item(client: Any, headers: dict[str, str], vault_id: str, title: str, password: str) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/vaults/{vault_id}/items",
        json={"title": title, "password": password, "username": "svc"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def add_member(client: Any, headers: dict[str, str], vault_id: str, email: str, role: str) -> None:
    r = client.post(f"/api/v1/vaults/{vault_id}/members", json={"email": email, "role": role}, headers=headers)
    assert r.status_code == 201, r.text


# -- the matrix -----------------------------------------------------------------------


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def shared_appliance(kind: str, hsm_config: Any, data_dir: Path) -> Iterator[tuple[Any, Any]]:
    """An appliance and its test client meant to live for a whole module: the
    `client`/`app` fixtures are per test, and enrolling users again for every
    case of a large matrix is what would make it slow."""
    base, schema_name = None, None
    if kind == "sqlite":
        url = f"sqlite:///{data_dir / 'coffre.db'}"
    else:
        base, reason = postgres_url_or_reason()
        if base is None:
            pytest.skip(reason)
        schema_name = "t_" + secrets.token_hex(6)
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema_name}"')
        url = f"{base}?options=-csearch_path%3D{schema_name}"
    appliance = build_app(url, hsm_config, data_dir, FakeClock())
    try:
        with TestClient(create_app(appliance)) as client:
            yield client, appliance
    finally:
        appliance.close()
        if schema_name is not None:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema_name}" CASCADE')


@pytest.fixture(scope="module", params=DATABASES)
def world(request, hsm_config, tmp_path_factory) -> Iterator[World]:
    """One appliance per database for the whole matrix, with its users enrolled once;
    each case then works in a vault of its own."""
    with shared_appliance(request.param, hsm_config, tmp_path_factory.mktemp(f"perm-{request.param}")) as (c, a):
        owner = new_user(c, a, "owner@example.com")
        actor = new_user(c, a, "actor@example.com")
        new_user(c, a, "newcomer@example.com")
        yield World(c, a, owner, user_id(c, owner), actor)


@dataclass(frozen=True)
class World:
    client: Any
    app: Any
    owner: dict[str, str]
    owner_id: str
    actor: dict[str, str]


@pytest.mark.parametrize(("role", "operation"), MATRIX)
def test_permission_matrix(world, role, operation):
    client, app = world.client, world.app
    vault_id = make_vault(client, world.owner, f"{role}-{operation}")
    item = make_item(client, world.owner, vault_id, "db", "s3cret-db")
    if role != "none":
        add_member(client, world.owner, vault_id, "actor@example.com", role)
    ctx = Ctx(vault_id, item["id"], world.owner_id, "newcomer@example.com", world.actor)
    op = OPERATIONS[operation]
    want = expected_status(role, operation)

    before = snapshot(app)
    r = op.call(client, ctx)
    after = snapshot(app)

    assert r.status_code == want, r.text
    if want >= 400:
        body = r.json()
        assert body["status_code"] == want
        assert body["detail"]
        assert after == before, "a refused operation changed stored state"
    else:
        assert (after != before) == op.mutates

    if role == "none":
        # Not a member looks exactly like "does not exist": same status, same body.
        ghost = replace(ctx, vault_id=secrets.token_hex(16), item_id=secrets.token_hex(16))
        r_ghost = op.call(client, ghost)
        assert r_ghost.status_code == 404
        assert r_ghost.json() == body
        assert "s3cret-db" not in r.text
    if want == 200 and operation == "get_item":
        assert r.json()["password"] == "s3cret-db"
    if want == 200 and operation == "list_items":
        assert [s["id"] for s in r.json()] == [item["id"]]


# -- last administrator -----------------------------------------------------------------


def test_last_admin_cannot_be_removed_or_demoted(client, app):
    owner = new_user(client, app, "owner@example.com")
    other = new_user(client, app, "other@example.com")
    owner_id, other_id = user_id(client, owner), user_id(client, other)
    vault_id = make_vault(client, owner)
    make_item(client, owner, vault_id, "db", "pw")
    add_member(client, owner, vault_id, "other@example.com", "write")
    members = f"/api/v1/vaults/{vault_id}/members"

    before = snapshot(app)
    for role in ("write", "read"):
        r = client.patch(f"{members}/{owner_id}", json={"role": role}, headers=owner)
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "conflict"
    r = client.delete(f"{members}/{owner_id}", headers=owner)
    assert r.status_code == 409, r.text
    assert snapshot(app) == before

    # With a second administrator, one may step down; then the other is the last one.
    r = client.patch(f"{members}/{other_id}", json={"role": "admin"}, headers=owner)
    assert r.status_code == 200, r.text
    r = client.patch(f"{members}/{owner_id}", json={"role": "read"}, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "read"
    r = client.patch(f"{members}/{other_id}", json={"role": "write"}, headers=other)
    assert r.status_code == 409, r.text
    r = client.delete(f"{members}/{other_id}", headers=other)
    assert r.status_code == 409, r.text
    roles = {m["user_id"]: m["role"] for m in client.get(members, headers=other).json()}
    assert roles == {owner_id: "read", other_id: "admin"}


def test_admin_may_remove_another_admin_but_not_the_last(client, app):
    owner = new_user(client, app, "owner@example.com")
    other = new_user(client, app, "other@example.com")
    owner_id, other_id = user_id(client, owner), user_id(client, other)
    vault_id = make_vault(client, owner)
    add_member(client, owner, vault_id, "other@example.com", "admin")
    members = f"/api/v1/vaults/{vault_id}/members"
    r = client.delete(f"{members}/{owner_id}", headers=other)
    assert r.status_code == 204, r.text
    r = client.delete(f"{members}/{other_id}", headers=other)
    assert r.status_code == 409, r.text
    assert [m["user_id"] for m in client.get(members, headers=other).json()] == [other_id]


# -- removal: access lost at once, key rotated ---------------------------------------------


def test_removed_member_loses_access_at_once_and_vault_key_rotates(client, app):
    owner = new_user(client, app, "owner@example.com")
    leaver = new_user(client, app, "leaver@example.com")  # this session stays open throughout
    stayer = new_user(client, app, "stayer@example.com")
    leaver_id = user_id(client, leaver)
    vault_id = make_vault(client, owner)
    secrets_by_item = {}
    for n in range(3):
        item = make_item(client, owner, vault_id, f"item-{n}", f"pw-{n}-{secrets.token_hex(4)}")
        secrets_by_item[item["id"]] = item["password"]
    add_member(client, owner, vault_id, "leaver@example.com", "write")
    add_member(client, owner, vault_id, "stayer@example.com", "read")

    # The leaver uses the vault first, so its key is unwrapped and cached for that session.
    first = next(iter(secrets_by_item))
    assert client.get(f"/api/v1/items/{first}", headers=leaver).json()["password"] == secrets_by_item[first]
    for headers in (leaver, stayer):
        assert client.get(f"/api/v1/vaults/{vault_id}/items", headers=headers).status_code == 200

    with app.db.read() as db:
        old_vault_version = db.get(Vault, vault_id).key_version
        old_items = {i.id: (i.key_version, i.password_ct) for i in db.execute(select(Item)).scalars()}
        old_wrapped = {m.user_id: m.wrapped_key for m in db.execute(select(VaultMember)).scalars()}
    assert leaver_id in old_wrapped

    r = client.delete(f"/api/v1/vaults/{vault_id}/members/{leaver_id}", headers=owner)
    assert r.status_code == 204, r.text

    # The same, already-open session is refused everywhere, as a non-member (404).
    for method, url, body in [
        ("GET", f"/api/v1/vaults/{vault_id}/items", None),
        ("GET", f"/api/v1/items/{first}", None),
        ("GET", f"/api/v1/vaults/{vault_id}", None),
        ("GET", f"/api/v1/vaults/{vault_id}/members", None),
        ("POST", f"/api/v1/vaults/{vault_id}/items", {"title": "sneaky"}),
        ("PUT", f"/api/v1/items/{first}", {"title": "sneaky", "version": 1}),
        ("DELETE", f"/api/v1/items/{first}", None),
    ]:
        r = client.request(method, url, json=body, headers=leaver)
        assert r.status_code == 404, (method, url, r.text)
        assert not any(pw in r.text for pw in secrets_by_item.values())
    assert vault_id not in [v["id"] for v in client.get("/api/v1/vaults", headers=leaver).json()]

    with app.db.read() as db:
        assert db.get(VaultMember, (vault_id, leaver_id)) is None
        new_vault_version = db.get(Vault, vault_id).key_version
        new_items = {i.id: (i.key_version, i.password_ct) for i in db.execute(select(Item)).scalars()}
        new_members = {m.user_id: (m.key_version, m.wrapped_key) for m in db.execute(select(VaultMember)).scalars()}
    assert new_vault_version > old_vault_version
    assert set(new_items) == set(old_items)
    for item_id, (key_version, ct) in new_items.items():
        assert key_version == new_vault_version > old_items[item_id][0]
        assert ct != old_items[item_id][1]
    assert leaver_id not in new_members and len(new_members) == 2
    for uid, (key_version, wrapped) in new_members.items():
        assert key_version == new_vault_version
        assert wrapped != old_wrapped[uid]
    assert old_wrapped[leaver_id] not in {w for _, w in new_members.values()}

    # Everyone who stays still reads every item, through sessions opened before the rotation.
    for headers in (owner, stayer):
        listed = client.get(f"/api/v1/vaults/{vault_id}/items", headers=headers)
        assert listed.status_code == 200, listed.text
        assert {s["id"] for s in listed.json()} == set(secrets_by_item)
        for item_id, password in secrets_by_item.items():
            r = client.get(f"/api/v1/items/{item_id}", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["password"] == password


# -- listings -------------------------------------------------------------------------------


def test_list_vaults_shows_only_the_callers_vaults(client, app):
    alice = new_user(client, app, "alice@example.com")
    bob = new_user(client, app, "bob@example.com")
    a1, a2 = make_vault(client, alice, "A-one"), make_vault(client, alice, "A-two")
    b1 = make_vault(client, bob, "B-one")
    shared = make_vault(client, alice, "Shared")
    add_member(client, alice, shared, "bob@example.com", "read")

    mine = {v["id"]: v["role"] for v in client.get("/api/v1/vaults", headers=alice).json()}
    theirs = {v["id"]: v["role"] for v in client.get("/api/v1/vaults", headers=bob).json()}
    assert mine == {a1: "admin", a2: "admin", shared: "admin"}
    assert theirs == {b1: "admin", shared: "read"}
    r = client.get(f"/api/v1/vaults/{a1}", headers=bob)
    assert r.status_code == 404


def test_item_listing_never_contains_passwords(client, app):
    owner = new_user(client, app, "owner@example.com")
    vault_id = make_vault(client, owner)
    for n in range(3):
        make_item(client, owner, vault_id, f"t{n}", f"hunter{n}-{secrets.token_hex(4)}")
    r = client.post(f"/api/v1/vaults/{vault_id}/items", json={"title": "no password"}, headers=owner)
    assert r.status_code == 201
    r = client.get(f"/api/v1/vaults/{vault_id}/items", headers=owner)
    assert r.status_code == 200
    summaries = r.json()
    assert len(summaries) == 4
    for summary in summaries:
        assert "password" not in summary
        assert "notes" not in summary
        assert set(summary) == {"id", "vault_id", "version", "title", "username", "url", "updated_at", "folder_id"}
    assert "hunter" not in r.text
