"""Direct database edits (what a thief or a rogue DBA could do) are refused.

Every refusal must be a generic 500 ``integrity_failure`` that says nothing about
why, must leave an ``integrity.failed`` audit entry, and must never echo plaintext.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.models import AuditEntry, Item, VaultMember
from hsm.envelope import Envelope
from tests.api.test_permissions import DATABASES, shared_appliance
from tests.support import new_user

PLAINTEXTS = ("pw-alpha-7f3e91", "pw-bravo-1c2d88", "pw-other-9ab0cc", "user-alpha", "title-alpha")
GENERIC_DETAIL = "stored data failed its integrity check; the event was audited"


def _vault(client: Any, headers: dict[str, str], name: str) -> str:
    r = client.post("/api/v1/vaults", json={"name": name}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _item(client: Any, headers: dict[str, str], vault_id: str, title: str, username: str, password: str) -> str:
    r = client.post(
        f"/api/v1/vaults/{vault_id}/items",
        json={"title": title, "username": username, "password": password},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module", params=DATABASES)
def shared(request, hsm_config, tmp_path_factory) -> Iterator[tuple[Any, Any, dict[str, str]]]:
    """One appliance per database and module, its owner enrolled once (enrollment is slow)."""
    with shared_appliance(request.param, hsm_config, tmp_path_factory.mktemp(f"tamper-{request.param}")) as (c, a):
        yield c, a, new_user(c, a, "owner@example.com")


# In this module `client` and `app` are the module-wide ones above, not conftest's per-test ones.
@pytest.fixture
def client(shared) -> Any:
    return shared[0]


@pytest.fixture
def app(shared) -> Any:
    return shared[1]


@pytest.fixture
def world(shared) -> dict[str, Any]:
    """Fresh vaults and items for each test, and the audit position they start from."""
    client, app, owner = shared
    with app.db.read() as db:
        since = db.execute(select(func.max(AuditEntry.seq))).scalar_one() or 0
    v1 = _vault(client, owner, "One")
    v2 = _vault(client, owner, "Two")
    return {
        "since": since,
        "owner": owner,
        "v1": v1,
        "v2": v2,
        "alpha": _item(client, owner, v1, "title-alpha", "user-alpha", "pw-alpha-7f3e91"),
        "bravo": _item(client, owner, v1, "title-bravo", "user-bravo", "pw-bravo-1c2d88"),
        "other": _item(client, owner, v2, "title-other", "user-other", "pw-other-9ab0cc"),
    }


def edit_item(app: Any, item_id: str, change: Callable[[Item], None]) -> None:
    with app.db.write() as db:
        item = db.get(Item, item_id)
        assert item is not None
        change(item)


def integrity_events(app: Any, world: dict[str, Any]) -> list[dict[str, Any]]:
    """The integrity failures audited since this test's world was built."""
    with app.db.read() as db:
        rows = (
            db.execute(
                select(AuditEntry)
                .where(AuditEntry.event == "integrity.failed", AuditEntry.seq > world["since"])
                .order_by(AuditEntry.seq)
            )
            .scalars()
            .all()
        )
    return [{"target": e.target, "actor": e.actor, **json.loads(e.details)} for e in rows]


def assert_generic_refusal(r: Any) -> None:
    assert r.status_code == 500, r.text
    body = r.json()
    assert body == {"status_code": 500, "error": "integrity_failure", "detail": GENERIC_DETAIL}
    for secret in PLAINTEXTS:
        assert secret not in r.text
    assert "Traceback" not in r.text


def flip(blob: bytes, index: int) -> bytes:
    data = bytearray(blob)
    data[index] ^= 0x01
    return bytes(data)


def test_flipped_byte_in_password_ct_is_refused_and_audited(client, app, world):
    edit_item(app, world["alpha"], lambda i: setattr(i, "password_ct", flip(i.password_ct, -1)))
    r = client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"])
    assert_generic_refusal(r)
    events = integrity_events(app, world)
    assert len(events) == 1
    assert events[0]["target"] == world["alpha"]
    assert events[0]["what"] == "item"
    assert events[0]["vault"] == world["v1"]
    # The untouched neighbour still opens.
    r = client.get(f"/api/v1/items/{world['bravo']}", headers=world["owner"])
    assert r.status_code == 200 and r.json()["password"] == "pw-bravo-1c2d88"


@pytest.mark.parametrize("position", ["first_body_byte", "middle", "tag"])
def test_any_flipped_body_byte_is_refused(client, app, world, position):
    with app.db.read() as db:
        blob = db.get(Item, world["alpha"]).password_ct
    header_len = len(Envelope.decode(blob).header())
    index = {"first_body_byte": header_len, "middle": (header_len + len(blob)) // 2, "tag": len(blob) - 8}[position]
    edit_item(app, world["alpha"], lambda i: setattr(i, "password_ct", flip(i.password_ct, index)))
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))
    assert [e["target"] for e in integrity_events(app, world)] == [world["alpha"]]


def test_swapping_ciphertexts_between_items_of_one_vault_is_refused(client, app, world):
    with app.db.write() as db:
        a, b = db.get(Item, world["alpha"]), db.get(Item, world["bravo"])
        a.password_ct, b.password_ct = b.password_ct, a.password_ct
    for item_id in (world["alpha"], world["bravo"]):
        assert_generic_refusal(client.get(f"/api/v1/items/{item_id}", headers=world["owner"]))
    assert {e["target"] for e in integrity_events(app, world)} == {world["alpha"], world["bravo"]}


def test_swapping_username_and_password_columns_is_refused(client, app, world):
    def swap(item: Item) -> None:
        item.username_ct, item.password_ct = item.password_ct, item.username_ct

    edit_item(app, world["alpha"], swap)
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))


def test_copying_a_ciphertext_into_another_vault_is_refused(client, app, world):
    with app.db.write() as db:
        src, dst = db.get(Item, world["alpha"]), db.get(Item, world["other"])
        dst.password_ct = src.password_ct
    assert_generic_refusal(client.get(f"/api/v1/items/{world['other']}", headers=world["owner"]))
    assert [e["vault"] for e in integrity_events(app, world)] == [world["v2"]]


def test_moving_a_whole_item_row_to_another_vault_is_refused(client, app, world):
    edit_item(app, world["alpha"], lambda i: setattr(i, "vault_id", world["v2"]))
    r = client.get(f"/api/v1/vaults/{world['v2']}/items", headers=world["owner"])
    assert_generic_refusal(r)
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))


def test_replaying_an_older_ciphertext_of_the_same_item_is_refused(client, app, world):
    with app.db.read() as db:
        old = db.get(Item, world["alpha"]).password_ct
    r = client.put(
        f"/api/v1/items/{world['alpha']}",
        json={"title": "title-alpha", "password": "pw-new-value", "version": 1},
        headers=world["owner"],
    )
    assert r.status_code == 200, r.text
    edit_item(app, world["alpha"], lambda i: setattr(i, "password_ct", old))
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))


def test_rolling_back_the_version_column_is_refused(client, app, world):
    r = client.put(
        f"/api/v1/items/{world['alpha']}",
        json={"title": "title-alpha", "password": "pw-new-value", "version": 1},
        headers=world["owner"],
    )
    assert r.status_code == 200, r.text
    edit_item(app, world["alpha"], lambda i: setattr(i, "version", 1))
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))


def _header_edits() -> dict[str, Callable[[bytes], bytes]]:
    def key_ref(blob: bytes) -> bytes:
        e = Envelope.decode(blob)
        return Envelope(e.algorithm, "dat4", e.params, e.body).encode()

    def nonce(blob: bytes) -> bytes:
        e = Envelope.decode(blob)
        return Envelope(e.algorithm, e.key_ref, flip(e.params, 0), e.body).encode()

    def short_nonce(blob: bytes) -> bytes:
        e = Envelope.decode(blob)
        return Envelope(e.algorithm, e.key_ref, e.params[:-1], e.body).encode()

    return {
        "magic": lambda b: flip(b, 0),
        "format": lambda b: flip(b, 2),
        "algorithm": lambda b: flip(b, 3),
        "key_ref_length": lambda b: flip(b, 4),
        "key_ref": key_ref,
        "nonce": nonce,
        "short_nonce": short_nonce,
        "truncated_to_header": lambda b: b[: len(Envelope.decode(b).header())],
        "empty": lambda b: b"",
    }


HEADER_EDITS = _header_edits()


@pytest.mark.parametrize("edit", sorted(HEADER_EDITS))
def test_edited_ciphertext_header_is_refused(client, app, world, edit):
    edit_item(app, world["alpha"], lambda i: setattr(i, "password_ct", HEADER_EDITS[edit](i.password_ct)))
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))
    assert [e["target"] for e in integrity_events(app, world)] == [world["alpha"]]


def test_edited_title_header_breaks_the_listing_too(client, app, world):
    edit_item(app, world["alpha"], lambda i: setattr(i, "title_ct", flip(i.title_ct, 3)))
    assert_generic_refusal(client.get(f"/api/v1/vaults/{world['v1']}/items", headers=world["owner"]))
    assert integrity_events(app, world)


def test_copied_wrapped_vault_key_is_refused_and_owner_still_works(client, app, world):
    owner = world["owner"]
    member = new_user(client, app, "member@example.com")
    member_id = client.get("/api/v1/me", headers=member).json()["id"]
    owner_id = client.get("/api/v1/me", headers=owner).json()["id"]
    r = client.post(
        f"/api/v1/vaults/{world['v1']}/members", json={"email": "member@example.com", "role": "read"}, headers=owner
    )
    assert r.status_code == 201, r.text
    # The member has used the vault already (its key is cached for that session).
    assert client.get(f"/api/v1/items/{world['alpha']}", headers=member).status_code == 200

    with app.db.write() as db:
        mine = db.get(VaultMember, (world["v1"], owner_id))
        theirs = db.get(VaultMember, (world["v1"], member_id))
        theirs.wrapped_key = mine.wrapped_key

    for url in (f"/api/v1/items/{world['alpha']}", f"/api/v1/vaults/{world['v1']}/items"):
        assert_generic_refusal(client.get(url, headers=member))
    events = integrity_events(app, world)
    assert events and all(e["what"] == "vault_key" and e["actor"] == member_id for e in events)
    assert {e["target"] for e in events} == {world["v1"]}

    r = client.get(f"/api/v1/items/{world['alpha']}", headers=owner)
    assert r.status_code == 200 and r.json()["password"] == "pw-alpha-7f3e91"
    r = client.get(f"/api/v1/vaults/{world['v1']}/items", headers=owner)
    assert r.status_code == 200 and len(r.json()) == 2


def test_flipped_wrapped_vault_key_is_refused(client, app, world):
    owner_id = client.get("/api/v1/me", headers=world["owner"]).json()["id"]
    with app.db.write() as db:
        mine = db.get(VaultMember, (world["v1"], owner_id))
        mine.wrapped_key = flip(mine.wrapped_key, -5)
    assert_generic_refusal(client.get(f"/api/v1/items/{world['alpha']}", headers=world["owner"]))
    assert [e["what"] for e in integrity_events(app, world)] == ["vault_key"]
    # Another vault of the same owner is not affected.
    r = client.get(f"/api/v1/items/{world['other']}", headers=world["owner"])
    assert r.status_code == 200 and r.json()["password"] == "pw-other-9ab0cc"


def test_tampering_never_echoes_plaintext_anywhere(client, app, world):
    edit_item(app, world["bravo"], lambda i: setattr(i, "password_ct", flip(i.password_ct, -1)))
    owner = world["owner"]
    responses = [
        client.get(f"/api/v1/items/{world['bravo']}", headers=owner),
        client.put(f"/api/v1/items/{world['bravo']}", json={"title": "t", "version": 1}, headers=owner),
        client.get(f"/api/v1/vaults/{world['v1']}/items", headers=owner),
    ]
    assert_generic_refusal(responses[0])
    for r in responses:
        assert r.status_code < 500 or r.json()["error"] == "integrity_failure"
        assert "pw-bravo-1c2d88" not in r.text
    with app.db.read() as db:
        details = " ".join(e.details for e in db.execute(select(AuditEntry)).scalars())
    for secret in PLAINTEXTS:
        assert secret not in details
