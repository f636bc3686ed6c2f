"""Loading a PKCS#11 module with OS locking, once per process.

python-pkcs11 calls ``C_Initialize(NULL)``: the module is then told the
application is single-threaded, and SoftHSM 2.6 runs without any mutex. Two
threads on two sessions corrupt its heap and crash the process (measured; see
``tests/hsm/test_thread_stress.py``). We therefore call ``C_Initialize`` ourselves
through ctypes with ``CKF_OS_LOCKING_OK`` before python-pkcs11 sees the module,
and give python-pkcs11 a ``lib`` whose ``initialize`` does not initialize again.

A forked child inherits the parent's module state, which PKCS#11 says is unusable
in the child: the child finalizes and initializes again (``ensure_loaded`` keys
everything on the process id).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import pkcs11
from pkcs11._pkcs11 import lib as _Pkcs11Lib

from hsm.errors import ModuleLoadError

CKR_OK = 0x0
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKF_OS_LOCKING_OK = 0x2


class _InitArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    ]


_CK_RV = ctypes.c_ulong
_InitializeFn = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_void_p)
_FinalizeFn = ctypes.CFUNCTYPE(_CK_RV, ctypes.c_void_p)


class _FunctionListHead(ctypes.Structure):
    """The first members of CK_FUNCTION_LIST; the rest is not needed here."""

    _fields_ = [
        ("major", ctypes.c_ubyte),
        ("minor", ctypes.c_ubyte),
        ("C_Initialize", _InitializeFn),
        ("C_Finalize", _FinalizeFn),
    ]


class _PreinitializedLib(_Pkcs11Lib):  # type: ignore[misc]
    """python-pkcs11's lib for a module we already initialized with OS locking."""

    def initialize(self) -> None:
        return None


@dataclass
class LoadedModule:
    path: str
    pid: int
    lib: _Pkcs11Lib
    functions: _FunctionListHead
    cdll: ctypes.CDLL
    users: int = 0

    def finalize(self) -> None:
        self.functions.C_Finalize(None)


_lock = threading.Lock()
_loaded: dict[str, LoadedModule] = {}


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


def _c_initialize(path: str) -> tuple[ctypes.CDLL, _FunctionListHead]:
    try:
        cdll = ctypes.CDLL(path)
    except OSError as exc:
        raise ModuleLoadError(f"cannot load PKCS#11 module {path}: {exc}") from exc
    try:
        get_function_list = cdll.C_GetFunctionList
    except AttributeError as exc:
        raise ModuleLoadError(f"{path} is not a PKCS#11 module (no C_GetFunctionList)") from exc
    get_function_list.restype = _CK_RV
    get_function_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionListHead))]
    table = ctypes.POINTER(_FunctionListHead)()
    rv = get_function_list(ctypes.byref(table))
    if rv != CKR_OK or not table:
        raise ModuleLoadError(f"C_GetFunctionList failed on {path} (0x{rv:x})")
    functions = table.contents
    args = _InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
    rv = functions.C_Initialize(ctypes.addressof(args))
    if rv == CKR_CRYPTOKI_ALREADY_INITIALIZED:
        # Inherited from a parent process through fork: start over in this one.
        functions.C_Finalize(None)
        rv = functions.C_Initialize(ctypes.addressof(args))
    if rv != CKR_OK:
        raise ModuleLoadError(f"C_Initialize with OS locking failed on {path} (0x{rv:x})")
    return cdll, functions


def _load_locked(path: str) -> LoadedModule:
    """This process's loaded module for ``path``, initialized if needed (caller holds ``_lock``)."""
    pid = os.getpid()
    current = _loaded.get(path)
    if current is not None and current.pid == pid:
        return current
    if not os.path.exists(path):
        raise ModuleLoadError(f"PKCS#11 module not found: {path}")
    cdll, functions = _c_initialize(path)
    try:
        lib = _PreinitializedLib(path)
    except pkcs11.PKCS11Error as exc:
        functions.C_Finalize(None)
        raise ModuleLoadError(f"python-pkcs11 could not open {path}: {exc!r}") from exc
    loaded = LoadedModule(path=path, pid=pid, lib=lib, functions=functions, cdll=cdll)
    _loaded[path] = loaded
    return loaded


def ensure_loaded(path: str) -> LoadedModule:
    """Return this process's loaded module for ``path``, initializing it if needed
    (a caller that never lets it go; pools use ``acquire``/``release``)."""
    with _lock:
        return _load_locked(path)


def acquire(path: str) -> LoadedModule:
    """``ensure_loaded`` for a user that will ``release`` it: the module is
    finalized only when its last user in this process lets it go, so one session
    pool starting over never pulls the module from under another. Loading and
    counting happen under one lock: a ``release`` in between would finalize the
    module this caller is about to use."""
    with _lock:
        loaded = _load_locked(path)
        loaded.users += 1
        return loaded


def release(loaded: LoadedModule) -> None:
    """Let go of an ``acquire``d module; the last user finalizes it."""
    with _lock:
        if loaded.pid != os.getpid():
            return  # the parent's module: nothing to finalize in this process
        loaded.users -= 1
        if loaded.users > 0:
            return
        if _loaded.get(loaded.path) is loaded:
            del _loaded[loaded.path]
        loaded.finalize()


def unload(path: str) -> None:
    """Finalize the module in this process whoever uses it (token set-up only)."""
    with _lock:
        current = _loaded.pop(path, None)
        if current is not None and current.pid == os.getpid():
            current.finalize()
