"""The audit trail: an append-only log chained by HMAC under the HSM audit key.

Each entry's MAC covers its sequence number, its fields and the previous entry's
MAC; the key label is recorded per entry so that audit keys can rotate. The
verifier recomputes the chain and names the first entry that does not match:
an edit breaks that entry's MAC, a deletion leaves a gap in the sequence, a
reorder breaks the link to the previous MAC.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from appliance.models import AuditEntry, AuditHead
from hsm.errors import KeyNotFound
from hsm.keystore import Keystore, Work
from hsm.labels import RootKind

if TYPE_CHECKING:
    from appliance.sessions import Principal

GENESIS = "0" * 64


def _canonical(
    seq: int,
    ts: float,
    event: str,
    actor: str | None,
    target: str | None,
    client_addr: str | None,
    details: str,
    key_label: str,
    prev_mac: str,
) -> bytes:
    return json.dumps(
        [seq, repr(ts), event, actor, target, client_addr, details, key_label, prev_mac],
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")


class AuditLog:
    def __init__(self, keystore: Keystore, clock: Callable[[], float]) -> None:
        self.keystore = keystore
        self.clock = clock

    def by(
        self, principal: Principal, db: Session, work: Work, event: str, *, target: str | None, **details: Any
    ) -> None:
        """Append an event done by a logged-in caller (actor and address from the session)."""
        self.append(
            db, work, event, actor=principal.user_id, target=target, client_addr=principal.client_addr, **details
        )

    def append(
        self,
        db: Session,
        work: Work,
        event: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        client_addr: str | None = None,
        **details: Any,
    ) -> None:
        """Append inside the caller's write transaction (so it commits with it).

        The head row is locked first, so appends from every node are serialized.
        """
        conn = db.connection()
        head = conn.execute(_LOCK_HEAD).one_or_none()
        if head is None:  # databases created before the head row was seeded
            conn.execute(insert(AuditHead).values(id=1, seq=0, mac=GENESIS))
        last_seq, prev_mac = (head.seq, head.mac) if head is not None else (0, GENESIS)
        seq = last_seq + 1
        ts = self.clock()
        text = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)
        label = work.current_label(RootKind.AUDIT)
        payload = _canonical(seq, ts, event, actor, target, client_addr, text, label, prev_mac)
        mac = work.mac(RootKind.AUDIT, payload, label)[1].hex()
        entry = {
            "seq": seq,
            "ts": ts,
            "event": event,
            "actor": actor,
            "target": target,
            "client_addr": client_addr,
            "details": text,
            "key_label": label,
            "prev_mac": prev_mac,
            "mac": mac,
        }
        conn.execute(_INSERT_ENTRY, entry)
        conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_mac": mac})


# Built once: appends run on every audited request.
_LOCK_HEAD = select(AuditHead.seq, AuditHead.mac).where(AuditHead.id == 1).with_for_update()
_INSERT_ENTRY = insert(AuditEntry)
_MOVE_HEAD = update(AuditHead).where(AuditHead.id == 1).values(seq=bindparam("new_seq"), mac=bindparam("new_mac"))


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_mac: str
    first_bad_seq: int | None = None
    reason: str | None = None


def verify(db: Session, work: Work, recorded_head: str | None = None) -> VerifyResult:
    """Recompute the chain. ``recorded_head`` is a head MAC recorded outside the
    appliance earlier: it must still be in the chain, or entries were cut from
    the end (which the in-database head row alone cannot prove)."""
    seen_recorded = recorded_head is None
    prev_mac = GENESIS
    expected_seq = 1
    checked = 0
    for entry in db.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars():
        if entry.seq != expected_seq:
            return VerifyResult(
                False, checked, prev_mac, expected_seq, f"entry {expected_seq} is missing (next present is {entry.seq})"
            )
        if entry.prev_mac != prev_mac:
            return VerifyResult(
                False,
                checked,
                prev_mac,
                entry.seq,
                f"entry {entry.seq} does not follow entry {entry.seq - 1} (reordered or replaced)",
            )
        payload = _canonical(
            entry.seq,
            entry.ts,
            entry.event,
            entry.actor,
            entry.target,
            entry.client_addr,
            entry.details,
            entry.key_label,
            entry.prev_mac,
        )
        try:
            _, mac = work.mac(RootKind.AUDIT, payload, entry.key_label)
        except KeyNotFound:
            return VerifyResult(False, checked, prev_mac, entry.seq, f"entry {entry.seq} names an unknown audit key")
        if not hmac.compare_digest(mac.hex(), entry.mac):
            return VerifyResult(False, checked, prev_mac, entry.seq, f"entry {entry.seq} was modified (MAC mismatch)")
        prev_mac = entry.mac
        seen_recorded = seen_recorded or hmac.compare_digest(entry.mac, recorded_head or "")
        expected_seq += 1
        checked += 1
    head = db.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    if head is not None and (head.seq != checked or head.mac != prev_mac):
        return VerifyResult(
            False,
            checked,
            prev_mac,
            checked + 1 if head.seq > checked else head.seq,
            f"the log ends at entry {checked} but its head says {head.seq}: entries were removed from the end",
        )
    if not seen_recorded:
        return VerifyResult(
            False,
            checked,
            prev_mac,
            checked + 1,
            "the recorded head MAC is not in the log: entries were removed from the end (or the log was replaced)",
        )
    return VerifyResult(True, checked, prev_mac)
