"""The folder permission matrix, generated: vault role (admin/write/read) x the
setting at the folder and at its parent (unset/full/read/none) x each operation.

The oracle is written here from the rule, not from the code: vault administrators
are always full; otherwise the nearest setting (folder, then parent) wins; with
none, the vault role (write: full, read: read). ``none`` must answer exactly like
an unknown id (same status, same bytes). One world per role, built once."""

from __future__ import annotations

import itertools

import pytest

from appliance.tokens import new_id
from tests.folders.helpers import folder, item, me, set_access, vault_with
from tests.support import new_user

SETTINGS = ("unset", "full", "read", "none")
RANK = {"none": 0, "read": 1, "full": 2}


def expected(role: str, ancestor: str, own: str) -> str:
    if role == "admin":
        return "full"
    for setting in (own, ancestor):
        if setting != "unset":
            return setting
    return "full" if role == "write" else "read"


def _same(a, b) -> bool:
    return a.status_code == b.status_code and a.content == b.content


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "write", "read"])
def test_permission_matrix(sqlite_client, sqlite_app, role):
    c, app = sqlite_client, sqlite_app
    owner = new_user(c, app, "owner@example.com")
    user = new_user(c, app, "user@example.com")
    other = new_user(c, app, "other@example.com")
    vault = vault_with(c, owner, {"user@example.com": role, "other@example.com": "read"})
    uid, oid = me(c, user), me(c, other)
    source = folder(c, owner, vault, "source")
    if role != "admin":
        assert set_access(c, owner, source, uid, "full").status_code == 200
    unknown_item, unknown_folder = new_id(), new_id()
    checked = 0
    for ancestor, own in itertools.product(SETTINGS, SETTINGS):
        label = f"{role}/{ancestor}/{own}"
        parent = folder(c, owner, vault, f"p-{ancestor}-{own}")
        target = folder(c, owner, vault, f"f-{ancestor}-{own}", parent)
        readable = item(c, owner, vault, f"read-{label}", target)
        updatable = item(c, owner, vault, f"upd-{label}", target)
        deletable = item(c, owner, vault, f"del-{label}", target)
        outgoing = item(c, owner, vault, f"out-{label}", target)
        incoming = item(c, owner, vault, f"in-{label}", source)
        for where, setting in ((parent, ancestor), (target, own)):
            if setting == "unset":
                continue
            r = set_access(c, owner, where, uid, setting)
            # Administrators cannot be restricted: they are always full.
            assert r.status_code == (409 if role == "admin" else 200), (label, r.text)
        level = expected(role, ancestor, own)

        # see folder
        listed = {f["id"]: f for f in c.get(f"/api/v1/vaults/{vault}/folders", headers=user).json()}
        assert (target in listed) == (level != "none"), label
        if level != "none":
            assert listed[target]["access"] == level, label
        # list items (whole vault, and filtered on the folder)
        titles = {i["id"] for i in c.get(f"/api/v1/vaults/{vault}/items", headers=user).json()}
        assert (readable in titles) == (level != "none"), label
        filtered = c.get(f"/api/v1/vaults/{vault}/items", params={"folder_id": target}, headers=user)
        if level == "none":
            unknown = c.get(f"/api/v1/vaults/{vault}/items", params={"folder_id": unknown_folder}, headers=user)
            assert _same(filtered, unknown), label
        else:
            assert readable in {i["id"] for i in filtered.json()}, label
        # read
        r = c.get(f"/api/v1/items/{readable}", headers=user)
        if level == "none":
            assert _same(r, c.get(f"/api/v1/items/{unknown_item}", headers=user)), label
        else:
            assert r.status_code == 200 and r.json()["password"] == f"pw-read-{label}", label
        # create
        r = c.post(f"/api/v1/vaults/{vault}/items", json={"title": "new", "folder_id": target}, headers=user)
        unknown = c.post(
            f"/api/v1/vaults/{vault}/items", json={"title": "new", "folder_id": unknown_folder}, headers=user
        )
        assert r.status_code == {"full": 201, "read": 403, "none": 404}[level], (label, r.text)
        if level == "none":
            assert _same(r, unknown), label
        # update
        body = {"title": "changed", "version": 1}
        r = c.put(f"/api/v1/items/{updatable}", json=body, headers=user)
        assert r.status_code == {"full": 200, "read": 403, "none": 404}[level], (label, r.text)
        if level == "none":
            assert _same(r, c.put(f"/api/v1/items/{unknown_item}", json=body, headers=user)), label
        # delete
        r = c.delete(f"/api/v1/items/{deletable}", headers=user)
        assert r.status_code == {"full": 204, "read": 403, "none": 404}[level], (label, r.text)
        if level == "none":
            assert _same(r, c.delete(f"/api/v1/items/{unknown_item}", headers=user)), label
        # move in (from a folder where the user is full)
        r = c.patch(f"/api/v1/items/{incoming}", json={"version": 1, "folder_id": target}, headers=user)
        assert r.status_code == {"full": 200, "read": 403, "none": 404}[level], (label, r.text)
        if level == "none":
            moved = c.patch(f"/api/v1/items/{incoming}", json={"version": 1, "folder_id": unknown_folder}, headers=user)
            assert _same(r, moved), label
        # move out (to that folder)
        r = c.patch(f"/api/v1/items/{outgoing}", json={"version": 1, "folder_id": source}, headers=user)
        assert r.status_code == {"full": 200, "read": 403, "none": 404}[level], (label, r.text)
        if level == "none":
            assert _same(r, c.patch(f"/api/v1/items/{unknown_item}", json={"version": 1}, headers=user)), label
        # set access (someone else's, on this folder): vault administrators only
        r = set_access(c, user, target, oid, "read")
        if role == "admin":
            assert r.status_code == 200, (label, r.text)
        elif level == "none":
            assert _same(r, set_access(c, user, unknown_folder, oid, "read")), label
        else:
            assert r.status_code == 403, (label, r.text)
        r = c.get(f"/api/v1/folders/{target}/access", headers=user)
        assert r.status_code == (200 if role == "admin" else 404 if level == "none" else 403), label
        # the folder itself answers like an unknown one when invisible
        r = c.patch(f"/api/v1/folders/{target}", json={"name": "x"}, headers=user)
        if level == "none":
            assert _same(r, c.patch(f"/api/v1/folders/{unknown_folder}", json={"name": "x"}, headers=user)), label
        else:
            assert r.status_code == (200 if level == "full" else 403), (label, r.text)
        # the owner (an administrator) still opens everything that is left
        for kept in (readable, updatable, outgoing, incoming):
            assert c.get(f"/api/v1/items/{kept}", headers=owner).status_code == 200, label
        checked += 1
    assert checked == 16
