"""Item history (list, view, restore, retention, deletion with the item), TOTP
codes against the RFC 6238 test vectors, and the generator API."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from appliance.errors import ValidationFailed
from appliance.history.totp import check, code_at
from appliance.models import ItemVersion
from tests.folders.helpers import item, me, vault_with
from tests.support import new_user

# RFC 6238 appendix B: the ASCII secrets "1234567890" repeated to 20/32/64 bytes, 8 digits, 30 s.
RFC_SECRETS = {
    "SHA1": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
    "SHA256": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA",
    "SHA512": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA",
}
RFC_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("t", "sha1", "sha256", "sha512"), RFC_VECTORS)
def test_totp_matches_rfc6238(t, sha1, sha256, sha512):
    for algorithm, want in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        uri = f"otpauth://totp/Coffre:test?secret={RFC_SECRETS[algorithm]}&algorithm={algorithm}&digits=8&period=30"
        got = code_at(uri, float(t))
        assert got.code == want, (algorithm, t)
        assert got.seconds_left == 30 - t % 30


@pytest.mark.parametrize("bad", ["not base32!", "otpauth://hotp/x?secret=GEZDGNBVGY3TQOJQ&counter=1", "AAAA"])
def test_totp_refuses_what_is_not_a_totp_secret(bad):
    with pytest.raises(ValidationFailed):
        check(bad)


def test_totp_endpoint_and_sealed_field(sqlite_client, sqlite_app, clock):
    c, app = sqlite_client, sqlite_app
    owner = new_user(c, app, "owner@example.com")
    vault = vault_with(c, owner, {})
    secret = RFC_SECRETS["SHA1"]
    item_id = item(c, owner, vault, "totp", None, totp=secret.lower())
    clock.advance(7)
    r = c.get(f"/api/v1/items/{item_id}/totp", headers=owner)
    assert r.status_code == 200, r.text
    assert r.json() == {"code": code_at(secret, clock.now).code, "seconds_left": 30 - int(clock.now) % 30}
    assert len(r.json()["code"]) == 6
    plain = item(c, owner, vault, "plain", None)
    assert c.get(f"/api/v1/items/{plain}/totp", headers=owner).status_code == 404
    bad = c.post(f"/api/v1/vaults/{vault}/items", json={"title": "x", "totp": "%%%"}, headers=owner)
    assert bad.status_code == 422
    dump = "\n".join(app.db.engine.raw_connection().iterdump()) if app.db.is_sqlite else ""
    assert secret not in dump and secret.lower() not in dump


def test_history_list_view_restore_retention_and_deletion(client, app):
    c = client
    owner = new_user(c, app, "owner@example.com")
    writer = new_user(c, app, "writer@example.com")
    vault = vault_with(c, owner, {"writer@example.com": "write"})
    item_id = item(c, owner, vault, "site", None)
    for n in range(1, 4):
        r = c.put(
            f"/api/v1/items/{item_id}", json={"title": "site", "password": f"pw-{n + 1}", "version": n}, headers=writer
        )
        assert r.status_code == 200 and r.json()["version"] == n + 1
    versions = c.get(f"/api/v1/items/{item_id}/versions", headers=owner).json()
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert versions[-1]["changed_by"] == me(c, owner) and versions[0]["changed_by"] == me(c, writer)
    assert c.get(f"/api/v1/items/{item_id}/versions/1", headers=owner).json()["password"] == "pw-site"
    assert c.get(f"/api/v1/items/{item_id}/versions/3", headers=owner).json()["password"] == "pw-3"
    assert c.get(f"/api/v1/items/{item_id}/versions/9", headers=owner).status_code == 404
    r = c.post(f"/api/v1/items/{item_id}/versions/1/restore", headers=writer)
    assert r.status_code == 200 and r.json()["version"] == 5 and r.json()["password"] == "pw-site"
    assert c.get(f"/api/v1/items/{item_id}", headers=owner).json()["password"] == "pw-site"
    assert c.get(f"/api/v1/items/{item_id}/versions/4", headers=owner).json()["password"] == "pw-4"
    # A history row moved to another version number does not open.
    with app.db.write() as db:
        row = db.get(ItemVersion, (item_id, 2))
        row.version = 7
    assert c.get(f"/api/v1/items/{item_id}/versions/7", headers=owner).status_code == 500
    assert c.delete(f"/api/v1/items/{item_id}", headers=owner).status_code == 204
    with app.db.read() as db:
        assert db.execute(select(func.count()).select_from(ItemVersion)).scalar() == 0


def test_history_retention_is_configurable(sqlite_client, sqlite_app):
    import dataclasses

    c, app = sqlite_client, sqlite_app
    app.settings = dataclasses.replace(app.settings, items=dataclasses.replace(app.settings.items, history_versions=2))
    owner = new_user(c, app, "owner@example.com")
    vault = vault_with(c, owner, {})
    item_id = item(c, owner, vault, "site", None)
    for n in range(1, 6):
        c.put(f"/api/v1/items/{item_id}", json={"title": "site", "password": f"p{n}", "version": n}, headers=owner)
    assert [v["version"] for v in c.get(f"/api/v1/items/{item_id}/versions", headers=owner).json()] == [6, 5, 4]


def test_generator_api(sqlite_client, sqlite_app):
    c, app = sqlite_client, sqlite_app
    owner = new_user(c, app, "owner@example.com")
    r = c.post("/api/v1/generator", json={"length": 24, "classes": ["lower", "digits"]}, headers=owner)
    assert r.status_code == 200
    password = r.json()["password"]
    assert len(password) == 24 and set(password) <= set("abcdefghijklmnopqrstuvwxyz0123456789")
    assert any(ch.isdigit() for ch in password) and any(ch.islower() for ch in password)
    words = c.post("/api/v1/generator", json={"length": 20, "classes": [], "passphrase_words": 5}, headers=owner)
    assert len(words.json()["password"].split("-")) == 5
    assert c.post("/api/v1/generator", json={"length": 4, "classes": ["lower"]}, headers=owner).status_code == 422
    assert c.post("/api/v1/generator", json={"length": 20, "classes": ["emoji"]}, headers=owner).status_code == 400
    assert c.post("/api/v1/generator", json={"length": 20, "classes": ["lower"]}).status_code == 401
