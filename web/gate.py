"""A fair work gate: a counting semaphore that serves waiters in arrival order."""

from __future__ import annotations

import threading
from collections import deque


class FairGate:
    """At most ``permits`` holders at once; a released permit goes straight to the
    longest waiter. ``threading.Semaphore`` lets a newly arriving thread take a
    permit before the waiter it just woke, which sends that waiter to the back of
    the queue again: under load a few requests wait far longer than the rest."""

    def __init__(self, permits: int) -> None:
        if permits < 1:
            raise ValueError("a gate needs at least one permit")
        self._lock = threading.Lock()
        self._free = permits
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout):
            return True  # a holder handed its permit over
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return True  # handed over between the timeout and this line
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1
