"""A bounded pool of PKCS#11 sessions, safe with threads and with forked workers.

- One *anchor* session logs in and stays open for the pool's life: closing the
  session that logged in logs every session of the application out.
- Up to ``pool_size`` work sessions are opened lazily and handed to one thread at
  a time; a caller that waits past ``acquire_timeout`` gets ``SessionExhausted``
  (never a hang).
- Everything is keyed on the process id: a forked child builds its own module
  state, anchor and sessions instead of using the parent's.
- A device-level failure resets the pool (sessions closed, module finalized) so
  the next call starts from scratch once the token is back; ``generation``
  changes so that holders of session-object handles know to drop them.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pkcs11 import exceptions as p11

from hsm import module as module_loader
from hsm.config import HsmConfig
from hsm.errors import (
    DeviceError,
    HsmError,
    OperationFailed,
    SessionExhausted,
    TokenMissing,
    WrongTokenPin,
)

# Library errors that mean "the device or our sessions are gone": reset the pool.
_DEVICE_ERRORS: tuple[type[Exception], ...] = (
    p11.DeviceError,
    p11.DeviceRemoved,
    p11.DeviceMemory,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.SessionCount,
    p11.UserNotLoggedIn,
    p11.GeneralError,
    p11.FunctionFailed,
    p11.HostMemory,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.WrappingKeyHandleInvalid,
    p11.UnwrappingKeyHandleInvalid,
)


def translate(exc: Exception) -> HsmError:
    """Map a python-pkcs11 error on session set-up to a typed HSM error."""
    if isinstance(exc, (p11.NoSuchToken, p11.TokenNotPresent, p11.TokenNotRecognised)):
        return TokenMissing("the configured token is not present")
    if isinstance(exc, (p11.PinIncorrect, p11.PinLocked, p11.PinInvalid, p11.PinLenRange)):
        return WrongTokenPin("the token refused the configured PIN")
    if isinstance(exc, HsmError):
        return exc
    return DeviceError(f"PKCS#11 device error: {type(exc).__name__}")


class SessionPool:
    def __init__(self, config: HsmConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._token: Any = None
        self._anchor: Any = None
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots: threading.BoundedSemaphore = threading.BoundedSemaphore(config.pool_size)
        self._open_count = 0
        self.generation = 0

    # -- set-up -----------------------------------------------------------------

    def _start(self) -> None:
        """Load the module and log in, once per process (caller holds ``_lock``)."""
        if self.config.softhsm_conf:
            os.environ["SOFTHSM2_CONF"] = self.config.softhsm_conf
        loaded = module_loader.ensure_loaded(self.config.module)
        try:
            pin = self.config.read_pin()
        except ValueError as exc:
            raise WrongTokenPin(str(exc)) from exc
        try:
            token = loaded.lib.get_token(token_label=self.config.token_label)
            anchor = token.open(rw=True, user_pin=pin)
        except p11.UserAlreadyLoggedIn:
            anchor = token.open(rw=True)
        except (p11.PKCS11Error, RuntimeError) as exc:
            module_loader.unload(self.config.module)
            raise translate(exc) from exc
        self._token = token
        self._anchor = anchor
        self._idle = queue.LifoQueue()
        self._open_count = 0
        self._pid = os.getpid()
        self.generation += 1

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                if self._pid is not None:
                    # Forked: the parent's handles and lent-session count mean nothing here.
                    self._token = None
                    self._anchor = None
                    self._slots = threading.BoundedSemaphore(self.config.pool_size)
                self._start()

    @property
    def token(self) -> Any:
        self._ensure_started()
        return self._token

    # -- use --------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Any]:
        """Lend one logged-in session to the calling thread."""
        self._ensure_started()
        if not self._slots.acquire(timeout=self.config.acquire_timeout):
            raise SessionExhausted(
                f"all {self.config.pool_size} HSM sessions stayed busy for {self.config.acquire_timeout:g} s"
            )
        generation = self.generation
        session = None
        try:
            try:
                session = self._idle.get_nowait()
            except queue.Empty:
                try:
                    session = self._token.open(rw=True)
                except (p11.PKCS11Error, RuntimeError) as exc:
                    self.reset()
                    raise translate(exc) from exc
                with self._lock:
                    self._open_count += 1
            try:
                yield session
            except _DEVICE_ERRORS as exc:
                # The device, the token or our handles are gone: start over next time.
                self.reset()
                session = None
                raise DeviceError(f"PKCS#11 device error: {type(exc).__name__}") from exc
            except p11.PKCS11Error as exc:
                raise OperationFailed(f"the token refused the operation: {type(exc).__name__}") from exc
        finally:
            if session is not None and generation == self.generation:
                self._idle.put(session)
            self._slots.release()

    def reset(self) -> None:
        """Drop every session and finalize the module; the next use starts over."""
        with self._lock:
            if self._pid != os.getpid():
                return
            while True:
                try:
                    session = self._idle.get_nowait()
                except queue.Empty:
                    break
                self._close_quietly(session)
            if self._anchor is not None:
                self._close_quietly(self._anchor)
            self._anchor = None
            self._token = None
            self._open_count = 0
            self._pid = None
            self.generation += 1
            module_loader.unload(self.config.module)

    def close(self) -> None:
        self.reset()

    @staticmethod
    def _close_quietly(session: Any) -> None:
        try:
            session.close()
        except (p11.PKCS11Error, RuntimeError):
            pass

    # -- introspection ----------------------------------------------------------

    @property
    def open_sessions(self) -> int:
        """Work sessions this process holds open (the anchor not counted)."""
        return self._open_count


__all__ = ["SessionPool", "translate"]
