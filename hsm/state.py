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
around a read-modify-write): the token offers no compare-and-swap.
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING, Any

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
        except p11.ObjectHandleInvalid:
            continue  # a copy was destroyed by another writer between find and read
    objs = list(work.session.get_objects(search))
    return sorted(objs, key=_seq, reverse=True)


def _create(work: Work, label: str, seq: int, value: bytes) -> Any:
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


def read_counters(work: Work, name: str, size: int) -> list[int]:
    """The table ``name`` (``size`` counters, all 0 when it does not exist yet)."""
    copies = _copies(work, _label("ctr", name))
    if not copies:
        return [0] * size
    value = bytes(copies[0][Attribute.VALUE])
    if len(value) != size * _COUNTER.size:
        raise OperationFailed(f"counter table {name} has {len(value) // _COUNTER.size} entries, not {size}")
    return [c for (c,) in _COUNTER.iter_unpack(value)]


def read_counter(work: Work, name: str, size: int, index: int) -> int:
    """One counter of the table ``name`` (the read on every request: no full unpack)."""
    if not 0 <= index < size:
        raise ValueError("counter index out of range")
    copies = _copies(work, _label("ctr", name))
    if not copies:
        return 0
    value = bytes(copies[0][Attribute.VALUE])
    if len(value) != size * _COUNTER.size:
        raise OperationFailed(f"counter table {name} has {len(value) // _COUNTER.size} entries, not {size}")
    return int(_COUNTER.unpack_from(value, index * _COUNTER.size)[0])


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


def destroy_counters(work: Work, name: str) -> int:
    """Remove a table (a deployment being dismantled, or a test cleaning up)."""
    copies = _copies(work, _label("ctr", name))
    _destroy_quietly(copies)
    return len(copies)


# -- markers ----------------------------------------------------------------------


def has_marker(work: Work, name: str) -> bool:
    return bool(_copies(work, _label("mark", name)))


def set_marker(work: Work, name: str) -> None:
    label = _label("mark", name)
    if not _copies(work, label):
        _create(work, label, 1, b"1")


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
