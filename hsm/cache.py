"""Keys kept inside the token across requests, by opaque cache key (never their values)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pkcs11 import exceptions as p11


class HandleCache:
    """Keys kept *inside the token* across requests (never their values).

    Entries are python-pkcs11 objects living in a pooled session; they expire
    after ``ttl`` seconds, are bounded in number, and are all dropped when the
    pool is reset (its generation changes). An entry that leaves the cache may
    still be in use by a request that fetched it a moment ago: it is destroyed
    only after ``GRACE`` seconds (a destroyed handle in use would read as a
    device failure).

    Every entry records the pool generation of the session that made it. An
    entry of an older generation is never destroyed, only forgotten: a reset
    closed its session, which took the object with it, and once the module is
    initialized again the same handle number may name another object.
    """

    GRACE = 30.0

    def __init__(self, entries: int, ttl: float, current_generation: Callable[[], int]) -> None:
        self._entries = entries
        self._ttl = ttl
        self._current_generation = current_generation
        self._lock = threading.Lock()
        self._data: OrderedDict[bytes, tuple[Any, float, int]] = OrderedDict()
        self._retired: list[tuple[Any, float, int]] = []

    def _retire(self, obj: Any, generation: int) -> None:
        now = time.monotonic()
        self._retired.append((obj, now, generation))
        while self._retired and self._retired[0][1] + self.GRACE < now:
            old, _, old_generation = self._retired.pop(0)
            self._destroy(old, old_generation)

    def get(self, key: bytes, generation: int) -> Any | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            obj, expires, gen = hit
            if gen != generation or expires < time.monotonic():
                del self._data[key]
                self._retire(obj, gen)
                return None
            self._data.move_to_end(key)
            return obj

    def put(self, key: bytes, obj: Any, generation: int) -> None:
        with self._lock:
            if self._entries <= 0:
                self._retire(obj, generation)  # caching off: still in use by the caller
                return
            old = self._data.pop(key, None)
            if old is not None:
                self._retire(old[0], old[2])
            self._data[key] = (obj, time.monotonic() + self._ttl, generation)
            while len(self._data) > self._entries:
                _, (evicted, _, evicted_generation) = self._data.popitem(last=False)
                self._retire(evicted, evicted_generation)

    def discard_prefix(self, prefix: bytes) -> None:
        with self._lock:
            for key in [k for k in self._data if k.startswith(prefix)]:
                obj, _, generation = self._data.pop(key)
                self._retire(obj, generation)

    def forget_before(self, generation: int) -> None:
        """Drop, without destroying, every entry older than ``generation`` (a reset)."""
        with self._lock:
            for key in [k for k, v in self._data.items() if v[2] < generation]:
                del self._data[key]
            self._retired = [r for r in self._retired if r[2] >= generation]

    def clear(self) -> None:
        """Destroy everything now (the keystore is closing)."""
        with self._lock:
            while self._data:
                obj, _, generation = self._data.popitem()[1]
                self._destroy(obj, generation)
            while self._retired:
                obj, _, generation = self._retired.pop()
                self._destroy(obj, generation)

    def __len__(self) -> int:
        return len(self._data)

    def _destroy(self, obj: Any, generation: int) -> None:
        if generation != self._current_generation():
            return  # see the class doc: gone with its session, handle possibly reused
        try:
            obj.destroy()
        except (p11.PKCS11Error, RuntimeError):
            pass  # its session may already be gone, taking the object with it


__all__ = ["HandleCache"]
