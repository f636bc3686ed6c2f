"""The one place keys are derived from human secrets (PIN, send code, transfer
password), and the review fixes around it: recorded parameters parsed strictly and,
where no MAC covers them, bounded; pinned bulk-key templates; operator input that
used to end in a traceback."""

from __future__ import annotations

import pytest

from appliance import peppered
from appliance.config import CryptoSettings
from appliance.errors import ClientError
from appliance.transfers import keys
from hsm import bulk, templates
from hsm.errors import DecryptionFailed

FAST = CryptoSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)


@pytest.mark.parametrize(
    "kdf",
    [
        None,
        "",
        "argon2id$t=1$m=1024",
        "argon2i$t=1$m=1024$p=1",
        "argon2id$t=0$m=1024$p=1",
        "argon2id$t=1$m=4$p=1",
        "argon2id$t=\u0661$m=1024$p=1",  # an Arabic-Indic digit one
        "argon2id$t=1$m=1024$p=1$x=2",
        "argon2id$t=99999$m=1024$p=1",
    ],
)
def test_malformed_parameters_are_refused(kdf: object) -> None:
    assert peppered.parse(kdf) is None


def test_parameters_above_the_ceiling_are_refused_where_no_mac_covers_them() -> None:
    assert peppered.bounded("argon2id$t=1$m=1024$p=1", FAST) == FAST
    assert peppered.bounded("argon2id$t=3$m=65536$p=1", FAST) is not None  # the built-in default
    assert peppered.bounded("argon2id$t=1$m=4194304$p=1", FAST) is None  # 4 GiB: never attempted
    assert peppered.parse("argon2id$t=1$m=4194304$p=1") is not None  # MAC-covered rows are not bounded


def test_the_box_refuses_a_wrong_key_context_or_short_blob() -> None:
    key = bytes(range(32))
    blob = peppered.seal(key, b"secret", b"ctx")
    assert peppered.open_(key, blob, b"ctx") == b"secret"
    for bad_key, bad_blob, ctx in ((bytes(32), blob, b"ctx"), (key, blob, b"other"), (key, blob[:20], b"ctx")):
        with pytest.raises(DecryptionFailed):
            peppered.open_(bad_key, bad_blob, ctx)


def test_a_transfer_with_tampered_parameters_opens_nothing_and_answers_no_500(sqlite_app) -> None:
    for kdf in ("garbage", "argon2id$t=1$m=4194304$p=1"):
        with pytest.raises(keys.WrongKey):
            keys.password_key_for(sqlite_app.keystore, FAST, "t" * 32, "pw", b"s" * 16, "coffre-pepper-v1", kdf)


def test_the_same_derivation_as_before_for_a_transfer_password(sqlite_app) -> None:
    label, key, kdf = keys.password_key(sqlite_app.keystore, FAST, "t" * 32, "pw", b"s" * 16, None)
    assert kdf == "argon2id$t=1$m=1024$p=1"
    assert keys.password_key_for(sqlite_app.keystore, FAST, "t" * 32, "pw", b"s" * 16, label, kdf) == key
    assert keys.password_key_for(sqlite_app.keystore, FAST, "t" * 32, "pX", b"s" * 16, label, kdf) != key


def test_bulk_keys_are_aes_256_with_96_bit_nonces(sqlite_app) -> None:
    with pytest.raises(ValueError):
        templates.imported_bulk_key(bytes(16))
    with sqlite_app.keystore.work() as work:
        key = bulk.import_key(work, bytes(32))
        sealed = bulk.seal(key, bytes(12), b"chunk")
        assert bulk.open_(key, bytes(12), sealed) == b"chunk"
        with pytest.raises(ValueError):
            bulk.seal(key, bytes(8), b"chunk")


def test_planning_a_vault_job_is_a_clear_refusal(sqlite_app) -> None:
    with pytest.raises(ClientError):
        sqlite_app.keyops.plan("vault")
