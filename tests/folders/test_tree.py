"""The folder tree's shape: at most 8 levels, no cycles, empty-only deletion, moves
(administrators only), and a folder under an invisible one shown at the nearest
visible level (its hidden parent's id never appears)."""

from __future__ import annotations

from tests.folders.helpers import folder, item, me, set_access, vault_with
from tests.support import new_user


def test_depth_cycles_deletion_and_moves(sqlite_client, sqlite_app):
    c, app = sqlite_client, sqlite_app
    owner = new_user(c, app, "owner@example.com")
    writer = new_user(c, app, "writer@example.com")
    vault = vault_with(c, owner, {"writer@example.com": "write"})
    chain = [folder(c, owner, vault, "level 1")]
    for depth in range(2, 9):
        chain.append(folder(c, owner, vault, f"level {depth}", chain[-1]))
    r = c.post(f"/api/v1/vaults/{vault}/folders", json={"name": "level 9", "parent_id": chain[-1]}, headers=owner)
    assert r.status_code == 422 and "8 levels" in r.json()["detail"]
    listed = c.get(f"/api/v1/vaults/{vault}/folders", headers=owner).json()
    assert [f["depth"] for f in listed] == list(range(1, 9))
    # No cycles, no move that would make the tree deeper than 8.
    r = c.patch(f"/api/v1/folders/{chain[0]}", json={"parent_id": chain[3]}, headers=owner)
    assert r.status_code == 422
    side = folder(c, owner, vault, "side")
    r = c.patch(f"/api/v1/folders/{chain[0]}", json={"parent_id": side}, headers=owner)
    assert r.status_code == 422  # 1 + the 8 levels it holds = 9
    r = c.patch(f"/api/v1/folders/{chain[7]}", json={"parent_id": side}, headers=owner)
    assert r.status_code == 200 and r.json()["parent_id"] == side and r.json()["depth"] == 2
    # Moving a folder changes what it inherits: vault administrators only.
    r = c.patch(f"/api/v1/folders/{chain[7]}", json={"parent_id": None}, headers=writer)
    assert r.status_code == 403
    r = c.patch(f"/api/v1/folders/{chain[7]}", json={"name": "renamed"}, headers=writer)
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    # Deletion: empty folders only.
    thing = item(c, owner, vault, "thing", side)
    assert c.delete(f"/api/v1/folders/{side}", headers=owner).status_code == 409  # a subfolder and an item
    assert c.delete(f"/api/v1/folders/{chain[7]}", headers=owner).status_code == 204
    assert c.delete(f"/api/v1/folders/{side}", headers=owner).status_code == 409  # the item
    assert c.delete(f"/api/v1/items/{thing}", headers=owner).status_code == 204
    assert c.delete(f"/api/v1/folders/{side}", headers=owner).status_code == 204
    assert c.delete(f"/api/v1/folders/{side}", headers=owner).status_code == 404


def test_a_folder_under_an_invisible_one_hangs_from_the_nearest_visible(sqlite_client, sqlite_app):
    c, app = sqlite_client, sqlite_app
    owner = new_user(c, app, "owner@example.com")
    reader = new_user(c, app, "reader@example.com")
    vault = vault_with(c, owner, {"reader@example.com": "read"})
    rid = me(c, reader)
    top = folder(c, owner, vault, "top")
    hidden = folder(c, owner, vault, "hidden", top)
    shared = folder(c, owner, vault, "shared", hidden)
    inside = item(c, owner, vault, "inside", shared)
    secret = item(c, owner, vault, "secret", hidden)
    assert set_access(c, owner, hidden, rid, "none").status_code == 200
    assert set_access(c, owner, shared, rid, "read").status_code == 200  # granted back below
    listed = c.get(f"/api/v1/vaults/{vault}/folders", headers=reader).json()
    assert [(f["name"], f["parent_id"]) for f in listed] == [("top", None), ("shared", top)]
    assert hidden not in c.get(f"/api/v1/vaults/{vault}/folders", headers=reader).text
    assert c.get(f"/api/v1/items/{inside}", headers=reader).json()["password"] == "pw-inside"
    assert c.get(f"/api/v1/items/{secret}", headers=reader).status_code == 404
    titles = {i["title"] for i in c.get(f"/api/v1/vaults/{vault}/items", headers=reader).json()}
    assert titles == {"inside"}
    access = {a["email"]: a for a in c.get(f"/api/v1/folders/{shared}/access", headers=owner).json()}
    assert access["reader@example.com"]["setting"] == "read"
    assert access["owner@example.com"]["effective"] == "full"
    r = set_access(c, owner, shared, me(c, owner), "read")
    assert r.status_code == 409  # administrators are always full
