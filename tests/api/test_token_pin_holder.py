"""The attacker who holds the database *and* the token PIN (a full disk image in lab
mode, or a rogue operator), with and without a user's PIN or session token. Each
test plays the attacker with python-pkcs11 on the real SoftHSM token and checks
that the result is exactly what docs/security.md says ("database + token PIN").
"""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from sqlalchemy import select

from appliance.items import field_context
from appliance.models import Item, User, VaultMember
from appliance.sessions import session_context, user_key_context
from appliance.tokens import SessionToken
from hsm import templates
from hsm.envelope import Envelope
from hsm.labels import RootKind
from hsm.policy import template_policy, violating_unwrap
from tests.support import PIN, new_user

OAEP = (Mechanism.SHA_1, __import__("pkcs11").MGF.SHA1, None)


def _setup(client, app):
    alice = new_user(client, app, "alice@example.com")
    vault = client.post("/api/v1/vaults", json={"name": "v"}, headers=alice).json()["id"]
    item = client.post(
        f"/api/v1/vaults/{vault}/items", json={"title": "t", "password": "hunter2-secret"}, headers=alice
    )
    with app.db.read() as db:
        user = db.execute(select(User).where(User.email == "alice@example.com")).scalar_one()
        member = db.get(VaultMember, (vault, user.id))
        row = db.get(Item, item.json()["id"])
    return alice, user, member, row


def _middle(work, blob: bytes, context: bytes, caller_key: bytes) -> bytes:
    """What the attacker gets by unsealing the KEK layer (the token PIN suffices)
    and opening the caller-key layer (needs the PIN key or a session key)."""
    middle = Envelope.decode(work.unseal(blob, context))
    return AESGCM(caller_key).decrypt(middle.params, middle.body, middle.header() + context)


def _inner_unwrap(work, inner: bytes, template: dict) -> object:
    envelope = Envelope.decode(inner)
    root = work.root(envelope.key_ref)
    return root.unwrap_key(
        ObjectClass.PRIVATE_KEY,
        KeyType.RSA,
        envelope.body,
        mechanism=Mechanism.AES_KEY_WRAP_PAD,
        capabilities=0,
        template=template,
    )


def test_the_token_enforces_the_unwrap_template_of_the_user_key_root(app):
    with app.keystore.work() as work:
        policy = template_policy(work)
    assert policy.enforced, policy.detail  # SoftHSM 2.6.1, measured; docs/security.md says so


def test_without_a_user_secret_the_private_key_stays_behind_the_pin(client, app):
    _, user, _, _ = _setup(client, app)
    with app.keystore.work() as work:
        middle = Envelope.decode(work.unseal(user.private_key_blob, user_key_context(user.id)))  # the KEK opens
        for guess in ("000000", "123456"):  # each guess costs a token HMAC and an Argon2id
            key = app.hasher.pin_key_for(app.keystore, user.id, guess, user.pin_salt, user.pin_pepper, user.pin_kdf)
            with pytest.raises(InvalidTag):
                AESGCM(key).decrypt(middle.params, middle.body, middle.header() + user_key_context(user.id))
        with pytest.raises(p11.AttributeSensitive):
            _ = work.root(work.current_label(RootKind.KEK))[Attribute.VALUE]


@pytest.mark.parametrize("route", ["pin", "session"])
def test_with_the_pin_or_a_session_token_the_private_key_is_usable_but_never_readable(client, app, route):
    headers, user, member, row = _setup(client, app)
    with app.keystore.work() as work:
        if route == "pin":
            key = app.hasher.pin_key_for(app.keystore, user.id, PIN, user.pin_salt, user.pin_pepper, user.pin_kdf)
            inner = _middle(work, user.private_key_blob, user_key_context(user.id), key)
        else:
            token = SessionToken.parse(headers["Authorization"].split()[1])
            from appliance.models import Session

            with app.db.read() as db:
                session = db.get(Session, token.session_id)
            context = session_context(session.id, user.id)
            inner = _middle(work, session.key_blob, context, token.wrapping_key())
        # 1. Unwrapping the private key readable or extractable: refused by the token.
        for template in (
            {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.DECRYPT: True},
            {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True, Attribute.DECRYPT: True},
        ):
            with pytest.raises(p11.TemplateInconsistent):
                _inner_unwrap(work, inner, template)
        # 2. The root cannot be changed or copied into a key without the template.
        root = work.root(Envelope.decode(inner).key_ref)
        with pytest.raises(p11.PKCS11Error):
            root[Attribute.UNWRAP] = True
        with pytest.raises((p11.PKCS11Error, NotImplementedError)):
            root.copy({Attribute.TOKEN: False})
        # 3. As the templates demand, it opens sensitive and not extractable: neither
        #    readable nor wrappable out.
        private = _inner_unwrap(work, inner, templates.user_private_key(extractable=False))
        with pytest.raises(p11.AttributeSensitive):
            _ = private[Attribute.PRIVATE_EXPONENT]
        mine = work.session.generate_key(KeyType.AES, 256, store=False, template={Attribute.TOKEN: False})
        with pytest.raises(p11.PKCS11Error):
            mine.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        # 4. But it is usable while the attacker has the token: the vault key can be
        #    unwrapped readable, and the items decrypted offline (docs: residual).
        wrapped = Envelope.decode(member.wrapped_key)
        vault_key = private.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.AES,
            wrapped.body,
            mechanism=Mechanism.RSA_PKCS_OAEP,
            mechanism_param=OAEP,
            capabilities=0,
            template={Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
        value = bytes(vault_key[Attribute.VALUE])
    field = Envelope.decode(row.password_ct)
    aad = field.header() + field_context(row.vault_id, row.id, "password", row.version, row.key_version)
    assert AESGCM(value).decrypt(field.params, field.body, aad) == b"hunter2-secret"


def test_a_vault_key_taken_that_way_opens_nothing_after_the_vault_key_rotates(client, app):
    """What bounds the residual: member removal (or `coffre vault rotate` later)
    rotates the vault key; items written afterwards are under a key never exposed."""
    headers, user, member, _ = _setup(client, app)
    new_user(client, app, "bob@example.com")
    vault = member.vault_id
    client.post(f"/api/v1/vaults/{vault}/members", json={"email": "bob@example.com", "role": "read"}, headers=headers)
    with app.keystore.work() as work:
        key = app.hasher.pin_key_for(app.keystore, user.id, PIN, user.pin_salt, user.pin_pepper, user.pin_kdf)
        private = _inner_unwrap(
            work,
            _middle(work, user.private_key_blob, user_key_context(user.id), key),
            templates.user_private_key(False),
        )
        stolen = bytes(
            private.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.AES,
                Envelope.decode(member.wrapped_key).body,
                mechanism=Mechanism.RSA_PKCS_OAEP,
                mechanism_param=OAEP,
                capabilities=0,
                template={Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )[Attribute.VALUE]
        )
    with app.db.read() as db:
        bob = db.execute(select(User).where(User.email == "bob@example.com")).scalar_one()
    assert client.delete(f"/api/v1/vaults/{vault}/members/{bob.id}", headers=headers).status_code == 204
    later = client.post(f"/api/v1/vaults/{vault}/items", json={"title": "n", "password": "after"}, headers=headers)
    with app.db.read() as db:
        row = db.get(Item, later.json()["id"])
    field = Envelope.decode(row.password_ct)
    aad = field.header() + field_context(row.vault_id, row.id, "password", row.version, row.key_version)
    with pytest.raises(InvalidTag):
        AESGCM(stolen).decrypt(field.params, field.body, aad)


def test_a_format_1_private_key_was_readable_which_is_why_it_is_replaced(client, app):
    """Before schema 0003 the same attacker could read the private key itself. Such
    a key pair is replaced at the user's next unlock (tests/api/test_user_keys.py)."""
    from tests.hsm.test_keystore import _legacy_blob

    with app.keystore.work() as work:
        pin_key = os.urandom(32)
        _, blob = _legacy_blob(work, pin_key, b"legacy")
        middle = Envelope.decode(work.unseal(blob, b"legacy"))
        wrapping = work.session.create_object(templates.caller_wrapping_key(pin_key))
        private = violating_unwrap(wrapping, middle.body, ObjectClass.PRIVATE_KEY, KeyType.RSA)
        exponent = private[Attribute.PRIVATE_EXPONENT]
        assert len(bytes(exponent)) >= 200
        for obj in (private, wrapping):
            obj.destroy()
    assert base64  # the value above is the private key in clear
