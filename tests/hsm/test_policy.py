"""The unwrap-template probe, both outcomes, on the real token: the user-key root
(made with CKA_UNWRAP_TEMPLATE through ctypes) is enforced on SoftHSM 2.6.1; a
wrapping key without the template is not, and the probe says the value was readable."""

from __future__ import annotations

import pytest
from pkcs11 import Attribute, KeyType, Mechanism

from hsm.keystore import Keystore
from hsm.labels import RootKind
from hsm.policy import probe_unwrap_template, template_policy


@pytest.fixture
def keystore(hsm_config):
    ks = Keystore(hsm_config)
    yield ks
    ks.close()


def test_the_user_key_root_template_is_enforced(keystore):
    with keystore.work() as work:
        root = work.root(work.current_label(RootKind.UKW))
        result = probe_unwrap_template(work, root)
        assert result.enforced, result.detail
        assert "refused" in result.detail
        assert template_policy(work) == result
        assert root[Attribute.EXTRACTABLE] is False and root[Attribute.SENSITIVE] is True
        assert root[Attribute.ENCRYPT] is False and root[Attribute.DECRYPT] is False


def test_a_wrapping_key_without_the_template_is_reported_not_enforced(keystore):
    with keystore.work() as work:
        plain = work.session.generate_key(
            KeyType.AES,
            256,
            store=False,
            capabilities=0,
            mechanism=Mechanism.AES_KEY_GEN,
            template={
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
                Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False,
            },
        )
        try:
            result = probe_unwrap_template(work, plain)
        finally:
            plain.destroy()
    assert not result.enforced
    assert "accepted" in result.detail and "readable" in result.detail
