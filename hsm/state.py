"""Small pieces of state kept *in the token*, where a database writer cannot reach.

Two intents, neither of which knows what it protects:

- **counter tables** (``read_counters`` / ``write_counters``): a named array of
  monotonic 32-bit counters. Callers use them as freshness anchors: a MAC that
  includes the current counter value stops verifying once the counter moves, so
  an old copy of a row restored from a backup (or by an attacker who can write
  the database) is detected.
- **markers** (``has_marker`` / ``set_marker``): a named fact that, once recorded,
  stays recorded (a one-time step has happened on this token).

Both are PKCS#11 data objects (``CKO_DATA``): token objects, private (readable
only after login), labelled ``coffre-state-<name>``. SoftHSM 2.6 does not let
``CKA_VALUE`` of a data object be modified (``CKR_ATTRIBUTE_READ_ONLY``), so a
table is never edited in place: each write creates a new object whose
``CKA_OBJECT_ID`` is the previous one's plus one, then destroys the older copies.
Readers take the highest ``CKA_OBJECT_ID``; a crash between the create and the
destroy leaves two copies and the newer one wins.

Writers must be serialized by the caller (the appliance holds a database lock
around a read-modify-write): the token offers no compare-and-swap. Within one
process every find, read, create and destroy of these objects also takes one
lock: SoftHSM 2.6 answered ``CKR_GENERAL_ERROR`` to a ``C_CreateObject`` racing a
find or a create on another session of the same process (measured under
tests/api/test_anchor_concurrency.py), even with OS locking. A create that still
fails that way (another process) is retried.
"""

from __future__ import annotations

import functools
import re
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from hsm.errors import OperationFailed

if TYPE_CHECKING:
    from hsm.keystore import Work

APPLICATION = "coffre"
PREFIX = "coffre-state-"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_COUNTER = struct.Struct(">I")
MAX_COUNTER = 2**32 - 1
_LOCK = threading.RLock()
_CREATE_ATTEMPTS = 4


F = TypeVar("F", bound=Callable[..., Any])


def _serialized(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def _label(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a state object name: {name!r}")
    return f"{PREFIX}{kind}-{name}"


def _seq(obj: Any) -> int:
    raw = obj[Attribute.OBJECT_ID]
    return int.from_bytes(bytes(raw), "big") if raw else 0


def _copies(work: Work, label: str) -> list[Any]:
    """Every copy of a state object, newest (highest sequence) first."""
    search = {Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.LABEL: label}
    for _ in range(3):
        try:
            objs = list(work.session.get_objects(search))
            return objs if len(objs) < 2 else sorted(objs, key=_seq, reverse=True)
        except (p11.ObjectHandleInvalid, p11.GeneralError):
            continue  # a copy was destroyed by another writer between find and read
    objs = list(work.session.get_objects(search))
    return sorted(objs, key=_seq, reverse=True)


def _create(work: Work, label: str, seq: int, value: bytes) -> Any:
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return _create_once(work, label, seq, value)
        except p11.GeneralError:
            if attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    return None  # not reached


def _create_once(work: Work, label: str, seq: int, value: bytes) -> Any:
    return work.session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.MODIFIABLE: False,
            Attribute.LABEL: label,
            Attribute.APPLICATION: APPLICATION,
            Attribute.OBJECT_ID: seq.to_bytes(8, "big"),
            Attribute.VALUE: value,
        }
    )


def _destroy_quietly(objs: list[Any]) -> None:
    for obj in objs:
        try:
            obj.destroy()
        except p11.PKCS11Error:
            pass  # another writer destroyed it first


# -- counter tables -------------------------------------------------------------


# What reading a copy that another writer destroyed between the find and the read
# looks like: SoftHSM answers CKR_OBJECT_HANDLE_INVALID, or CKR_GENERAL_ERROR when
# the object's file is already gone. The read starts over (a newer copy exists).
_VANISHED = (p11.ObjectHandleInvalid, p11.GeneralError)
_READ_ATTEMPTS = 5


def _newest_value(work: Work, label: str) -> bytes | None:
    for attempt in range(_READ_ATTEMPTS):
        copies = _copies(work, label)
        if not copies:
            return None
        try:
            return bytes(copies[0][Attribute.VALUE])
        except _VANISHED:
            if attempt == _READ_ATTEMPTS - 1:
                raise
    return None  # not reached


@_serialized
def read_counters(work: Work, name: str, size: int) -> list[int]:
    """The table ``name`` (``size`` counters, all 0 when it does not exist yet)."""
    value = _newest_value(work, _label("ctr", name))
    if value is None:
        return [0] * size
    if len(value) != size * _COUNTER.size:
        raise OperationFailed(f"counter table {name} has {len(value) // _COUNTER.size} entries, not {size}")
    return [c for (c,) in _COUNTER.iter_unpack(value)]


@_serialized
def read_counter(work: Work, name: str, size: int, index: int) -> int:
    """One counter of the table ``name`` (the read on every request: no full unpack)."""
    if not 0 <= index < size:
        raise ValueError("counter index out of range")
    value = _newest_value(work, _label("ctr", name))
    if value is None:
        return 0
    if len(value) != size * _COUNTER.size:
        raise OperationFailed(f"counter table {name} has {len(value) // _COUNTER.size} entries, not {size}")
    return int(_COUNTER.unpack_from(value, index * _COUNTER.size)[0])


@_serialized
def write_counters(work: Work, name: str, values: list[int]) -> None:
    """Replace the table ``name``. Counters only move forward: a value lower than
    the stored one is refused (a bug, never a path an attacker controls)."""
    label = _label("ctr", name)
    copies = _copies(work, label)
    seq = _seq(copies[0]) if copies else 0
    if copies:
        old = [c for (c,) in _COUNTER.iter_unpack(bytes(copies[0][Attribute.VALUE]))]
        if len(old) != len(values) or any(new < was for new, was in zip(values, old, strict=True)):
            raise OperationFailed(f"counter table {name}: counters never move backwards")
    if any(not 0 <= v <= MAX_COUNTER for v in values):
        raise OperationFailed(f"counter table {name}: counter out of range")
    _create(work, label, seq + 1, b"".join(_COUNTER.pack(v) for v in values))
    _destroy_quietly(copies)


@_serialized
def destroy_counters(work: Work, name: str) -> int:
    """Remove a table (a deployment being dismantled, or a test cleaning up)."""
    copies = _copies(work, _label("ctr", name))
    _destroy_quietly(copies)
    return len(copies)


# -- markers ----------------------------------------------------------------------


@_serialized
def has_marker(work: Work, name: str) -> bool:
    return bool(_copies(work, _label("mark", name)))


@_serialized
def set_marker(work: Work, name: str) -> None:
    label = _label("mark", name)
    if not _copies(work, label):
        _create(work, label, 1, b"1")


@_serialized
def clear_marker(work: Work, name: str) -> None:
    """Forget a marker (a deployment being dismantled, or a test cleaning up)."""
    _destroy_quietly(_copies(work, _label("mark", name)))


__all__ = [
    "MAX_COUNTER",
    "clear_marker",
    "destroy_counters",
    "has_marker",
    "read_counter",
    "read_counters",
    "set_marker",
    "write_counters",
]
