"""Cryptographic properties of what the appliance stores, checked on the rows."""

from __future__ import annotations

from dataclasses import replace

from pkcs11 import Attribute
from pkcs11.util.rsa import decode_rsa_public_key
from sqlalchemy import select

from appliance.config import CryptoSettings
from appliance.models import Item, User, VaultMember
from hsm.envelope import Algorithm, Envelope
from hsm.labels import RootKind, parse_label
from tests.support import new_user


def test_production_defaults():
    crypto = CryptoSettings()
    assert crypto.rsa_bits == 3072
    assert (crypto.argon2_time_cost, crypto.argon2_memory_kib) == (3, 65536)


def test_default_rsa_size_is_3072_generated_in_the_token(sqlite_app, sqlite_client):
    sqlite_app.settings = replace(sqlite_app.settings, crypto=replace(sqlite_app.settings.crypto, rsa_bits=3072))
    new_user(sqlite_client, sqlite_app, "big@example.com")
    with sqlite_app.db.read() as db:
        user = db.execute(select(User).where(User.email == "big@example.com")).scalar_one()
    modulus = decode_rsa_public_key(user.public_key)[Attribute.MODULUS]
    assert len(modulus) * 8 == 3072 == user.key_bits


def test_stored_blobs_are_layered_and_name_their_algorithms(client, app):
    headers = new_user(client, app, "a@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=headers).json()
    client.post(f"/api/v1/vaults/{vault['id']}/items", json={"title": "t", "password": "same"}, headers=headers)
    client.post(f"/api/v1/vaults/{vault['id']}/items", json={"title": "t", "password": "same"}, headers=headers)
    with app.db.read() as db:
        user = db.execute(select(User)).scalar_one()
        members = db.execute(select(VaultMember)).scalars().all()
        items = db.execute(select(Item)).scalars().all()
        # the password hash is Argon2id over a peppered input
        assert user.password_hash.startswith("$argon2id$")
        assert parse_label(user.password_pepper) == (RootKind.PEPPER, 1)
        # private key: GCM under a KEK outside, KWP under the PIN key inside
        outer = Envelope.decode(user.private_key_blob)
        assert outer.algorithm is Algorithm.AES_256_GCM
        assert parse_label(outer.key_ref)[0] is RootKind.KEK
        assert outer.key_ref == user.kek_label
        # every wrapped vault key is RSA-OAEP (never PKCS#1 v1.5)
        for member in members:
            assert Envelope.decode(member.wrapped_key).algorithm in (Algorithm.RSA_OAEP_SHA1, Algorithm.RSA_OAEP_SHA256)
        # the same plaintext encrypts differently twice
        first, second = (Envelope.decode(i.password_ct) for i in items)
        assert first.algorithm is Algorithm.AES_256_GCM
        assert first.params != second.params and first.body != second.body
        assert b"same" not in items[0].password_ct


def test_pin_is_not_stored_and_its_kdf_is_recorded(client, app):
    new_user(client, app, "a@example.com", pin="593017")
    with app.db.read() as db:
        user = db.execute(select(User)).scalar_one()
    assert user.pin_kdf.startswith("argon2id$t=")
    assert len(user.pin_salt) == 16
    for value in vars(user).values():
        if isinstance(value, (str, bytes)):
            assert b"593017" not in (value.encode() if isinstance(value, str) else value)
