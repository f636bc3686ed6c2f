"""Many threads driving the HSM layer at once.

SoftHSM 2.6.1 initialized the way python-pkcs11 does it (``C_Initialize(NULL)``:
no OS locking) corrupts its heap when two threads use two sessions: the control
run below crashes (SIGSEGV/SIGABRT) or fails with CKR_GENERAL_ERROR. ``hsm.module``
initializes with ``CKF_OS_LOCKING_OK``; the same load then runs clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace

import pytest
from pkcs11 import Attribute, ObjectClass

from hsm.config import HsmConfig
from hsm.keystore import Keystore
from hsm.labels import RootKind

THREADS = 12
ROUNDS = 150


def test_many_threads_share_the_pool_without_corruption(hsm_config: HsmConfig):
    keystore = Keystore(replace(hsm_config, pool_size=4, cache_entries=0))
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def count_session_objects() -> int:
        with keystore.work() as work:
            return len(
                list(work.session.get_objects({Attribute.TOKEN: False, Attribute.CLASS: ObjectClass.SECRET_KEY}))
            )

    baseline_objects = count_session_objects()

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                with keystore.work() as work:
                    payload = f"{n}:{i}".encode() * 4
                    key = work.new_data_key()
                    blob = work.encrypt_field(key, payload, b"ctx")
                    assert work.decrypt_field(key, blob, b"ctx") == payload
                    sealed = work.seal(payload, b"seal")
                    assert work.unseal(sealed, b"seal") == payload
                    _, mac1 = work.mac(RootKind.AUDIT, payload)
                    _, mac2 = work.mac(RootKind.AUDIT, payload)
                    assert mac1 == mac2
                assert keystore.pool.open_sessions <= 4
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert errors == []
    # Every session went back to the pool, no temporary key was left behind...
    assert keystore.pool.open_sessions <= 4
    assert count_session_objects() == baseline_objects
    # ...and closing the pool closes every session it opened.
    keystore.close()
    assert keystore.pool.open_sessions == 0


_WORKLOAD = """
import os, sys, threading
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.mechanisms import GCMParams
if sys.argv[1] == "fixed":
    from hsm.module import ensure_loaded
    lib = ensure_loaded(sys.argv[2]).lib
else:
    lib = pkcs11.lib(sys.argv[2])
token = lib.get_token(token_label=sys.argv[3])
anchor = token.open(rw=True, user_pin=open(sys.argv[4]).read().strip())
def run():
    s = token.open(rw=True)
    for _ in range(2000):
        k = s.generate_key(KeyType.AES, 256, store=False, capabilities=0,
                           template={Attribute.ENCRYPT: True, Attribute.TOKEN: False})
        k.encrypt(b"x" * 64, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(os.urandom(12), b"a", 128))
        k.destroy()
ts = [threading.Thread(target=run) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("survived")
"""


def _run_workload(mode: str, hsm_config: HsmConfig) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOFTHSM2_CONF": hsm_config.softhsm_conf or ""}
    return subprocess.run(
        [sys.executable, "-c", _WORKLOAD, mode, hsm_config.module, hsm_config.token_label, hsm_config.pin_file or ""],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_raw_threads_with_os_locking_survive(hsm_config: HsmConfig):
    result = _run_workload("fixed", hsm_config)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout
    assert "Exception" not in result.stderr


@pytest.mark.slow
def test_control_without_os_locking_breaks(hsm_config: HsmConfig):
    """The control experiment: python-pkcs11's own initialization, same load."""
    for _ in range(6):
        result = _run_workload("default", hsm_config)
        if result.returncode != 0 or "Exception" in result.stderr:
            return  # crashed or corrupted, as measured: the fix above is what prevents it
    pytest.skip("the unlocked control run survived 6 times on this machine; the fixed run is still checked")
