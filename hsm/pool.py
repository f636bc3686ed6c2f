"""A bounded pool of PKCS#11 sessions, safe with threads and with forked workers.

- One *anchor* session logs in and stays open for the pool's life: closing the
  session that logged in logs every session of the application out.
- Up to ``pool_size`` work sessions are opened lazily and handed to one thread at
  a time; a caller that waits past ``acquire_timeout`` gets ``SessionExhausted``
  (never a hang).
- Everything is keyed on the process id: a forked child builds its own module
  state, anchor and sessions instead of using the parent's.
- A device-level failure resets the pool so that the next call starts from
  scratch once the token is back; ``generation`` changes so that holders of
  session-object handles know to drop them. A reset never pulls the module from
  under a thread still inside a PKCS#11 call: it *drains* (no session is lent
  until every lent one is back), then closes every session and the anchor and
  lets go of the module
  (finalized when its last pool in the process lets go), and only then does the
  next caller start over. A failure seen on a session of an older generation does
  not reset the newer one.
"""

from __future__ import annotations

import os
import threading
import time
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
        self.generation = 0
        self._fresh_state(os.getpid())

    def _fresh_state(self, pid: int) -> None:
        """Empty state owned by process ``pid`` (a forked child drops the parent's
        handles, lent-session count and lock, which may have been held at fork)."""
        self._owner = pid
        self._cond = threading.Condition(threading.Lock())
        self._slots = threading.BoundedSemaphore(self.config.pool_size)
        self._module: module_loader.LoadedModule | None = None
        self._token: Any = None
        self._anchor: Any = None
        self._idle: list[Any] = []
        self._open_count = 0
        self._lent = 0
        self._draining = False

    def _check_fork(self) -> None:
        pid = os.getpid()
        if self._owner != pid:
            self._fresh_state(pid)
            self.generation += 1

    # -- set-up (callers hold ``_cond``) ----------------------------------------

    def _start(self) -> None:
        """Load the module and log in."""
        if self.config.softhsm_conf:
            os.environ["SOFTHSM2_CONF"] = self.config.softhsm_conf
        loaded = module_loader.acquire(self.config.module)
        try:
            token, anchor = self._log_in(loaded)
        except BaseException:
            module_loader.release(loaded)  # whatever failed, the count goes back
            raise
        self._module = loaded
        self._token = token
        self._anchor = anchor
        self._idle = []
        self._open_count = 0
        self.generation += 1

    def _log_in(self, loaded: module_loader.LoadedModule) -> tuple[Any, Any]:
        try:
            pin = self.config.read_pin()
        except ValueError as exc:
            raise WrongTokenPin(str(exc)) from exc
        try:
            token = loaded.lib.get_token(token_label=self.config.token_label)
            try:
                anchor = token.open(rw=True, user_pin=pin)
            except p11.UserAlreadyLoggedIn:
                anchor = token.open(rw=True)  # another pool of this process logged in
        except (p11.PKCS11Error, RuntimeError) as exc:
            raise translate(exc) from exc
        return token, anchor

    def _wait_until_ready(self, deadline: float) -> None:
        while self._draining:
            remaining = deadline - time.monotonic()
            if (remaining <= 0 or not self._cond.wait(remaining)) and self._draining:
                raise SessionExhausted("the HSM connection is being reset; try again")
        if self._token is None:
            self._start()

    def _finish_drain(self) -> None:
        """Close the drained generation's sessions once none is lent. Not before:
        a key object found or made through one session runs its operations on
        that session, and long-lived ones (roots, cached keys) are used by every
        thread; a session closed while another thread is inside a call on it is a
        use-after-free in the module (measured: SIGSEGV in C_Encrypt)."""
        if not self._draining or self._lent > 0:
            return
        while self._idle:
            self._close_quietly(self._idle.pop())
            self._open_count -= 1
        if self._anchor is not None:
            self._close_quietly(self._anchor)
        module, self._module = self._module, None
        self._anchor = None
        self._token = None
        self._draining = False
        if module is not None:
            module_loader.release(module)
        self._cond.notify_all()

    def _invalidate(self, generation: int) -> None:
        """Start a reset of ``generation`` (no-op if that one is already gone)."""
        with self._cond:
            if generation != self.generation or self._token is None or self._draining:
                return
            self.generation += 1
            self._draining = True
            self._finish_drain()

    @contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        """Hold the pool's lock, or give up at ``deadline``: another thread may be
        stuck starting the module (a network HSM that does not answer)."""
        if not self._cond.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise SessionExhausted(f"the HSM did not answer within {self.config.acquire_timeout:g} s")
        try:
            yield
        finally:
            self._cond.release()

    @property
    def token(self) -> Any:
        self._check_fork()
        deadline = time.monotonic() + self.config.acquire_timeout
        with self._locked(deadline):
            self._wait_until_ready(deadline)
            return self._token

    def module_cdll(self) -> Any:
        """The module's ctypes handle, for the few calls python-pkcs11 cannot make
        (``hsm/policy.py``: attribute-array templates)."""
        self._check_fork()
        deadline = time.monotonic() + self.config.acquire_timeout
        with self._locked(deadline):
            self._wait_until_ready(deadline)
            assert self._module is not None
            return self._module.cdll

    # -- use --------------------------------------------------------------------

    @contextmanager
    def lend(self) -> Iterator[tuple[Any, int]]:
        """Lend one logged-in session and the generation it belongs to."""
        self._check_fork()
        deadline = time.monotonic() + self.config.acquire_timeout
        slots = self._slots
        if not slots.acquire(timeout=self.config.acquire_timeout):
            raise SessionExhausted(
                f"all {self.config.pool_size} HSM sessions stayed busy for {self.config.acquire_timeout:g} s"
            )
        try:
            with self._locked(deadline):
                self._wait_until_ready(deadline)
                generation = self.generation
                token = self._token
                session = self._idle.pop() if self._idle else None
                self._lent += 1
        except BaseException:
            slots.release()
            raise
        try:
            if session is None:
                try:
                    session = token.open(rw=True)
                except (p11.PKCS11Error, RuntimeError) as exc:
                    self._invalidate(generation)
                    raise translate(exc) from exc
                with self._cond:
                    self._open_count += 1
            try:
                yield session, generation
            except _DEVICE_ERRORS as exc:
                # The device, the token or our handles are gone: start over next time.
                self._invalidate(generation)
                raise DeviceError(f"PKCS#11 device error: {type(exc).__name__}") from exc
            except p11.PKCS11Error as exc:
                raise OperationFailed(f"the token refused the operation: {type(exc).__name__}") from exc
        finally:
            self._give_back(session)
            slots.release()

    def _give_back(self, session: Any) -> None:
        with self._cond:
            self._lent -= 1
            if session is not None:
                # While draining, a returned session waits in the idle list (nothing
                # lends it) and is closed with the others when the drain ends.
                self._idle.append(session)
            self._finish_drain()

    def reset(self) -> None:
        """Drop every session and let go of the module; the next use starts over.
        Sessions lent at this moment finish their call first (see the module doc)."""
        self._check_fork()
        self._invalidate(self.generation)

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

    def sessions_in_use(self) -> int:
        """Work sessions lent to a thread right now (metrics)."""
        return self._lent


__all__ = ["SessionPool", "translate"]
