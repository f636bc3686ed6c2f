"""The HSM layer against a real SoftHSM2 token: roots, templates, sealing, wrapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hsm.config import HsmConfig
from hsm.envelope import Algorithm, Envelope
from hsm.errors import DecryptionFailed, KeyNotFound, MalformedEnvelope, ModuleLoadError, TokenMissing, WrongTokenPin
from hsm.keystore import Keystore
from hsm.labels import RootKind, label_for, parse_label


@pytest.fixture
def keystore(hsm_config: HsmConfig) -> Iterator[Keystore]:
    ks = Keystore(hsm_config)
    yield ks
    ks.close()


def test_roots_exist_with_versioned_labels(keystore):
    roots = keystore.list_roots()
    assert {r.kind for r in roots} == set(RootKind)
    for root in roots:
        assert parse_label(root.label) == (root.kind, root.version)
        assert root.label == label_for(root.kind, root.version)


@pytest.mark.parametrize("kind", list(RootKind))
def test_root_keys_cannot_be_read_or_wrapped_out(keystore, kind):
    with keystore.work() as work:
        label = work.current_root(kind).label
        key = work.root(label)
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.TOKEN] is True
        with pytest.raises(p11.AttributeSensitive):
            _ = key[Attribute.VALUE]
        wrapper = work.session.generate_key(
            KeyType.AES,
            256,
            store=False,
            capabilities=0,
            mechanism=Mechanism.AES_KEY_GEN,
            template={Attribute.WRAP: True, Attribute.TOKEN: False},
        )
        try:
            with pytest.raises(p11.PKCS11Error):
                wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        finally:
            wrapper.destroy()


def test_kek_capabilities_are_pinned(keystore):
    with keystore.work() as work:
        kek = work.root(work.current_root(RootKind.KEK).label)
        assert kek[Attribute.ENCRYPT] and kek[Attribute.DECRYPT]
        assert not kek[Attribute.WRAP] and not kek[Attribute.UNWRAP]
        assert not kek[Attribute.SIGN] and not kek[Attribute.DERIVE]
        mac = work.root(work.current_root(RootKind.PEPPER).label)
        assert mac[Attribute.SIGN] and not mac[Attribute.ENCRYPT] and not mac[Attribute.UNWRAP]


def test_seal_is_randomized_and_bound_to_context(keystore):
    with keystore.work() as work:
        a = work.seal(b"same plaintext", b"ctx")
        b = work.seal(b"same plaintext", b"ctx")
        assert a != b
        assert work.unseal(a, b"ctx") == b"same plaintext"
        with pytest.raises(DecryptionFailed):
            work.unseal(a, b"other ctx")
        for i in range(len(a)):
            flipped = bytearray(a)
            flipped[i] ^= 0x01
            with pytest.raises(DecryptionFailed):
                work.unseal(bytes(flipped), b"ctx")
        with pytest.raises(DecryptionFailed):
            work.unseal(a[:-1], b"ctx")


def test_decryption_errors_are_one_opaque_type(keystore):
    with keystore.work() as work:
        blob = work.seal(b"x", b"c")
        errors = []
        for bad in (blob[:3], b"XX" + blob[2:], blob[:-1] + bytes([blob[-1] ^ 1])):
            with pytest.raises(DecryptionFailed) as info:
                work.unseal(bad, b"c")
            errors.append(str(info.value))
        assert set(errors) == {"decryption failed"}


def test_envelope_header_round_trip_and_rejects_garbage():
    env = Envelope(Algorithm.AES_256_GCM, "coffre-kek-v1", b"n" * 12, b"body")
    assert Envelope.decode(env.encode()) == env
    for bad in (b"", b"CF", b"CF\x02\x01\x00\x00x", b"CF\x01\x09\x00\x00x", env.header()):
        with pytest.raises(MalformedEnvelope):
            Envelope.decode(bad)


def test_user_key_pair_three_layers_and_rsa_size(keystore):
    with keystore.work() as work:
        pin_key, other = os.urandom(32), os.urandom(32)
        public, blob = work.generate_user_keypair(2048, pin_key, b"user:1")
        from pkcs11.util.rsa import decode_rsa_public_key

        modulus = decode_rsa_public_key(public)[Attribute.MODULUS]
        assert len(modulus) * 8 == 2048
        outer = Envelope.decode(blob)
        assert outer.algorithm is Algorithm.AES_256_GCM and parse_label(outer.key_ref)[0] is RootKind.KEK
        middle = Envelope.decode(work.unseal(blob, b"user:1"))
        # The middle layer names the caller key and the ukw version of the inner layer.
        assert middle.algorithm is Algorithm.AES_256_GCM and middle.key_ref.split(";")[0] == "pin"
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        inner = Envelope.decode(AESGCM(pin_key).decrypt(middle.params, middle.body, middle.header() + b"user:1"))
        assert inner.algorithm is Algorithm.AES_KEY_WRAP_PAD and parse_label(inner.key_ref)[0] is RootKind.UKW
        assert middle.key_ref == f"pin;{inner.key_ref}"
        assert work.private_key_ukw_label(blob, b"user:1") == inner.key_ref
        assert work.private_key_format(blob, b"user:1") == "ukw"
        private = work.open_private_key(blob, b"user:1", pin_key)
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        with pytest.raises(p11.AttributeSensitive):
            _ = private[Attribute.PRIVATE_EXPONENT]
        with pytest.raises(DecryptionFailed):
            work.open_private_key(blob, b"user:1", other)  # wrong PIN key
        with pytest.raises(DecryptionFailed):
            work.open_private_key(blob, b"user:2", pin_key)  # blob moved to another user


def _legacy_blob(work, pin_key, context):
    """A private key as schema <= 0002 stored it (format 1): AES-KWP under the
    caller's key imported into the token, then the KEK."""
    from pkcs11 import KeyType, Mechanism
    from pkcs11.util.rsa import encode_rsa_public_key

    from hsm import templates

    public, private = work.session.generate_keypair(
        KeyType.RSA,
        2048,
        store=False,
        capabilities=0,
        mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
        public_template=templates.user_public_key(2048),
        private_template=templates.user_private_key(extractable=True),
    )
    wrapping = work.session.create_object(templates.caller_wrapping_key(pin_key))
    body = wrapping.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    for obj in (wrapping, private):
        obj.destroy()
    der = bytes(encode_rsa_public_key(public))
    public.destroy()
    return der, work.seal(Envelope(Algorithm.AES_KEY_WRAP_PAD, "pin", b"", bytes(body)).encode(), context)


def test_format_1_blobs_still_open_and_rewrap_into_format_2(keystore):
    with keystore.work() as work:
        pin_key, session_key = os.urandom(32), os.urandom(32)
        _, legacy = _legacy_blob(work, pin_key, b"u")
        assert work.private_key_format(legacy, b"u") == "caller-kwp"
        assert work.open_private_key(legacy, b"u", pin_key)[Attribute.EXTRACTABLE] is False
        with pytest.raises(DecryptionFailed):
            work.open_private_key(legacy, b"u", session_key)
        session_blob = work.rewrap_private_key(legacy, b"u", pin_key, session_key, b"s", "session")
        assert work.private_key_format(session_blob, b"s") == "ukw"
        assert work.open_private_key(session_blob, b"s", session_key)[Attribute.SENSITIVE] is True


def test_vault_key_wraps_with_oaep_only(keystore):
    with keystore.work() as work:
        pin_key = os.urandom(32)
        public, blob = work.generate_user_keypair(2048, pin_key, b"u")
        private = work.open_private_key(blob, b"u", pin_key)
        data_key = work.new_data_key()
        wrapped = work.wrap_for_public_key(data_key, public)
        envelope = Envelope.decode(wrapped)
        assert envelope.algorithm in (Algorithm.RSA_OAEP_SHA1, Algorithm.RSA_OAEP_SHA256)
        # SoftHSM 2.6 only does OAEP with SHA-1; a token that does SHA-256 gets it.
        assert work.oaep_algorithm() is Algorithm.RSA_OAEP_SHA1
        opened = work.unwrap_with_private_key(private, wrapped)
        ct = work.encrypt_field(data_key, b"secret", b"aad")
        assert work.decrypt_field(opened, ct, b"aad") == b"secret"
        assert opened[Attribute.SENSITIVE] is True
        with pytest.raises(p11.AttributeSensitive):
            _ = opened[Attribute.VALUE]
        # A blob that claims PKCS#1 v1.5 (or anything but OAEP) is refused outright.
        forged = Envelope(Algorithm.AES_KEY_WRAP_PAD, "member", b"", envelope.body).encode()
        with pytest.raises(DecryptionFailed):
            work.unwrap_with_private_key(private, forged)


def test_same_field_encrypts_differently_and_aad_binds(keystore):
    with keystore.work() as work:
        key = work.new_data_key()
        a = work.encrypt_field(key, b"pw", b"item=1")
        b = work.encrypt_field(key, b"pw", b"item=1")
        assert a != b
        with pytest.raises(DecryptionFailed):
            work.decrypt_field(key, a, b"item=2")


def test_rotation_adds_a_version_and_old_blobs_still_open(hsm_config, tmp_path):
    # A private token so rotation does not change the shared one.
    from appliance.setup import InitReport, create_lab_token

    conf, pin_file = create_lab_token(tmp_path, hsm_config.module, "rot", InitReport(tmp_path / "x"))
    # SoftHSM reads SOFTHSM2_CONF at C_Initialize: run it in a child process.
    code = f"""
import os
os.environ["SOFTHSM2_CONF"] = {conf!r}
from hsm.config import HsmConfig
from hsm.keystore import Keystore
from hsm.labels import RootKind
ks = Keystore(HsmConfig(module={hsm_config.module!r}, token_label="rot", pin_file={pin_file!r}))
ks.ensure_roots()
with ks.work() as w:
    old = w.seal(b"payload", b"c")
assert ks.rotate_root(RootKind.KEK) == "coffre-kek-v2"
with ks.work() as w:
    w.refresh_roots()
    assert w.unseal(old, b"c") == b"payload"
    new = w.reseal(old, b"c")
    assert w.sealed_under(new) == "coffre-kek-v2", w.sealed_under(new)
    assert w.unseal(new, b"c") == b"payload"
print("ok")
"""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=os.getcwd(), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_unknown_root_label_is_typed_error(keystore):
    with keystore.work() as work, pytest.raises(KeyNotFound):
        work.root("coffre-kek-v99")


def test_typed_errors_for_bad_module_token_and_pin(hsm_config, tmp_path):
    bad_module = Keystore(HsmConfig(module=str(tmp_path / "nope.so"), token_label="x", pin_env="X"))
    with pytest.raises(ModuleLoadError):
        bad_module.ping()
    os.environ["COFFRE_TEST_PIN"] = "000000"
    wrong_pin = Keystore(
        HsmConfig(module=hsm_config.module, token_label=hsm_config.token_label, pin_env="COFFRE_TEST_PIN")
    )
    with pytest.raises(WrongTokenPin):
        wrong_pin.ping()
    wrong_pin.close()
    missing = Keystore(HsmConfig(module=hsm_config.module, token_label="no-such-token", pin_env="COFFRE_TEST_PIN"))
    with pytest.raises(TokenMissing):
        missing.ping()
    missing.close()


def test_session_pool_exhaustion_is_an_error_not_a_hang(hsm_config):
    from dataclasses import replace

    from hsm.errors import SessionExhausted

    ks = Keystore(replace(hsm_config, pool_size=1, acquire_timeout=0.2))
    try:
        with ks.work(), pytest.raises(SessionExhausted), ks.work():
            pass
    finally:
        ks.close()


def test_forked_child_gets_its_own_module_state(keystore):
    with keystore.work() as work:
        blob = work.seal(b"fork", b"c")
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            with keystore.work() as work:
                code = 0 if work.unseal(blob, b"c") == b"fork" else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with keystore.work() as work:  # the parent is unaffected
        assert work.unseal(blob, b"c") == b"fork"


def test_temporary_objects_are_destroyed(keystore):
    def session_objects() -> int:
        with keystore.work() as work:
            return len(
                list(work.session.get_objects({Attribute.TOKEN: False, Attribute.CLASS: ObjectClass.SECRET_KEY}))
            )

    keystore.cache.clear()
    before = session_objects()
    with keystore.work() as work:
        for _ in range(5):
            work.new_data_key()
    assert session_objects() == before


def test_concurrent_root_creation_converges_on_one_key(keystore):
    """Two nodes running `coffre init`/`keys rotate` at once: both create the label;
    everyone keeps the copy with the lowest CKA_ID."""
    from pkcs11 import Attribute, KeyType, Mechanism

    from hsm import templates

    label = "coffre-audit-v77"
    with keystore.work() as work:
        try:
            # another process's copy, created "at the same moment"
            work.session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                id=b"\xff" * 16,
                label=label,
                store=True,
                capabilities=0,
                mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
                template=templates.root_hmac(label),
            )
            work.create_root(RootKind.AUDIT, 77)
            copies = work._copies(label)
            assert len(copies) == 1
            assert copies[0][Attribute.ID] != b"\xff" * 16
            work.refresh_roots()
            assert work.mac(RootKind.AUDIT, b"x", label)[0] == label
        finally:
            for obj in work._copies(label):
                obj.destroy()
            work.refresh_roots()


class _Recorded:
    """Stands in for a cached key handle: records whether it was destroyed."""

    def __init__(self) -> None:
        self.destroyed = False

    def destroy(self) -> None:
        self.destroyed = True


def test_handle_cache_never_destroys_a_handle_from_before_a_reset(monkeypatch):
    """After a reset the module may be initialized again and hand out the same
    handle numbers: destroying a stale handle could destroy another object."""
    from hsm.keystore import HandleCache

    generation = [1]
    cache = HandleCache(4, 60.0, lambda: generation[0])
    before, retired_before = _Recorded(), _Recorded()
    cache.put(b"user:a", before, 1)
    cache.put(b"user:b", retired_before, 1)
    cache.discard_prefix(b"user:b")  # retired in generation 1
    generation[0] = 3  # the pool was reset
    monkeypatch.setattr(HandleCache, "GRACE", -1.0)  # retired entries go at the next retire
    cache.forget_before(3)
    assert cache.get(b"user:a", 3) is None
    current = _Recorded()
    cache.put(b"user:c", current, 3)
    cache.discard_prefix(b"user:")  # retires a and c; past their grace, they are destroyed...
    assert current.destroyed  # ...if they belong to the current generation
    assert not before.destroyed and not retired_before.destroyed
    stale = _Recorded()
    cache.put(b"user:d", stale, 2)  # made by a session lent before the reset
    cache.clear()
    assert not stale.destroyed


def test_roots_looked_up_before_a_reset_are_not_kept(keystore):
    with keystore.work() as work:
        work.mac(RootKind.AUDIT, b"x")
        old_generation = work.generation
    keystore.pool.reset()
    with keystore.work() as work:
        assert work.generation > old_generation
        assert keystore._roots == {}
        work.mac(RootKind.AUDIT, b"x")
        assert keystore._roots


def test_a_start_stuck_in_the_module_is_an_error_not_a_hang(hsm_config):
    """A network HSM that does not answer keeps one thread inside C_OpenSession
    with the pool's lock held; the others must get SessionExhausted (503)."""
    import threading
    from dataclasses import replace

    from hsm.errors import SessionExhausted

    ks = Keystore(replace(hsm_config, acquire_timeout=0.2))
    outcome: list[BaseException] = []

    def request() -> None:
        try:
            with ks.work():
                pass
        except BaseException as exc:
            outcome.append(exc)

    ks.pool._cond.acquire()  # the stuck starter
    try:
        caller = threading.Thread(target=request)
        caller.start()
        caller.join(timeout=10)
        assert not caller.is_alive(), "the caller hung"
    finally:
        ks.pool._cond.release()
    assert len(outcome) == 1 and isinstance(outcome[0], SessionExhausted)
    assert "did not answer" in str(outcome[0])
    ks.ping()  # and the pool works once the module answers
    ks.close()
