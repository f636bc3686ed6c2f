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
import time
from dataclasses import replace

import pytest
from pkcs11 import Attribute, ObjectClass

from hsm.config import HsmConfig
from hsm.errors import DeviceError
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


def test_listing_roots_races_session_key_churn(hsm_config: HsmConfig):
    """Seen in CI: C_FindObjects also returns other sessions' session objects, and
    one destroyed between the find and the attribute read made the listing fail
    with ObjectHandleInvalid, which reset the pool under everyone's feet."""
    keystore = Keystore(replace(hsm_config, pool_size=4, cache_entries=0))
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn() -> None:
        try:
            while not stop.is_set():
                with keystore.work() as work:
                    for _ in range(4):
                        work.new_data_key()
        except BaseException as exc:
            errors.append(exc)

    with keystore.work():
        generation = keystore.pool.generation  # the pool starts lazily
    churners = [threading.Thread(target=churn) for _ in range(3)]
    for t in churners:
        t.start()
    try:
        for _ in range(400):
            with keystore.work() as work:
                assert {info.kind for info in work.list_roots()} == set(RootKind)
    finally:
        stop.set()
        for t in churners:
            t.join(timeout=60)
    assert errors == []
    assert keystore.pool.generation == generation, "the pool was reset"
    keystore.close()


@pytest.mark.parametrize("module_shared", [False, True], ids=["last-user-finalizes", "module-shared"])
def test_a_reset_waits_for_sessions_in_use_and_the_pool_recovers(hsm_config: HsmConfig, module_shared: bool):
    """One thread's reset must not close a session or finalize the module under
    threads still inside PKCS#11 calls (it crashed the process: SIGSEGV in
    C_Encrypt), nor hand later callers a half-torn-down pool. With another pool
    in the process the module stays initialized and only the sessions go."""
    other = Keystore(hsm_config) if module_shared else None
    if other is not None:
        other.ping()
    keystore = Keystore(replace(hsm_config, pool_size=4, cache_entries=0))
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    stop = threading.Event()

    def worker() -> None:
        start.wait()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with keystore.work() as work:
                    # The KEK's key object was found through some pooled session and
                    # runs its operations there, whichever thread uses it.
                    sealed = work.seal(b"payload %d" % i, b"ctx")
                    assert work.unseal(sealed, b"ctx") == b"payload %d" % i
            except BaseException as exc:
                errors.append(exc)

    def resetter() -> None:
        start.wait()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            keystore.pool.reset()
            time.sleep(0.002)
        stop.set()

    with keystore.work():
        first_generation = keystore.pool.generation
    threads = [threading.Thread(target=worker) for _ in range(5)] + [threading.Thread(target=resetter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    # Work lent before a reset may fail as a clean DeviceError; nothing else may.
    assert [e for e in errors if not isinstance(e, DeviceError)] == []
    assert keystore.pool.generation >= first_generation + 2, "no reset happened"
    with keystore.work() as work:
        assert work.unseal(work.seal(b"after", b"ctx"), b"ctx") == b"after"
    keystore.close()
    assert keystore.pool.open_sessions == 0
    if other is not None:
        other.ping()  # the other pool never noticed
        other.close()


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


_ACQUIRE_RELEASE = """
import sys, threading
from hsm import module
sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen every window
errors = []
def run():
    for _ in range(1000):
        try:
            loaded = module.acquire(sys.argv[1])
            try:
                loaded.lib.get_token(token_label=sys.argv[2])
            finally:
                module.release(loaded)
        except BaseException as exc:
            errors.append(repr(exc))
ts = [threading.Thread(target=run) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("errors", len(errors), errors[:3])
"""


def test_module_users_never_see_it_finalized_under_them(hsm_config: HsmConfig):
    """Threads acquiring and releasing the module at once: it is finalized only by
    its last user, never under another (CKR_CRYPTOKI_NOT_INITIALIZED). A release
    that ignores the count fails this at once; acquire() also loads and counts
    under one lock, so no release can slip between the two."""
    env = {**os.environ, "SOFTHSM2_CONF": hsm_config.softhsm_conf or ""}
    result = subprocess.run(
        [sys.executable, "-c", _ACQUIRE_RELEASE, hsm_config.module, hsm_config.token_label],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "errors 0 " in result.stdout, result.stdout
