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

from appliance.db import Database
from appliance.errors import IntegrityFailure
from appliance.integrity import macs
from appliance.models import AuditEntry, AuditHead
from hsm import state
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


def genesis_marker(deployment: str) -> str:
    return f"audit-genesis-{deployment}"


def head_mac(work: Work, deployment: str, seq: int, mac: str) -> str:
    return macs.make(work, "audit-head", deployment, seq, mac, kind=RootKind.AUDIT)


def head_is_valid(work: Work, deployment: str, seq: int, mac: str, stored: str | None) -> bool:
    return macs.check(work, stored, "audit-head", deployment, seq, mac, kind=RootKind.AUDIT)


class AuditBroken(IntegrityFailure):
    """The head of the chain is missing or forged: nothing more is appended."""


class AuditLog:
    def __init__(
        self, keystore: Keystore, database: Database, clock: Callable[[], float], deployment: Callable[[], str]
    ) -> None:
        self.keystore = keystore
        self.database = database
        self.clock = clock
        self.deployment = deployment
        # Called with each appended event's name (metrics count appends, logins, lockouts).
        self.observers: list[Callable[[str], None]] = []

    def ensure_genesis(self) -> bool:
        """Write entry 1 (``audit.genesis``) if this deployment's log never had one,
        and record in the token that it has: from then on an emptied log, or a head
        row reset to the start, is tampering. Returns whether it wrote it now."""
        deployment = self.deployment()
        marker = genesis_marker(deployment)
        with self.keystore.work() as work:
            if state.has_marker(work, marker):
                return False
            with self.database.write() as db:
                # Entry 1 of a new log; on a log from before genesis entries existed,
                # the entry from which an emptied or reset log is detected.
                self._append(db, work, "audit.genesis", None, None, None, {"deployment": deployment}, True)
            state.set_marker(work, marker)
        return True

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
        Its MAC is checked first: a deleted or rewritten head (to hide entries cut
        from the end) stops every append rather than start a new chain."""
        self._append(db, work, event, actor, target, client_addr, details, False)

    def _append(
        self,
        db: Session,
        work: Work,
        event: str,
        actor: str | None,
        target: str | None,
        client_addr: str | None,
        details: dict[str, Any],
        genesis: bool,
    ) -> None:
        conn = db.connection()
        deployment = self.deployment()
        head = conn.execute(_LOCK_HEAD).one_or_none()
        if head is None:
            raise AuditBroken()
        last_seq, prev_mac = head.seq, head.mac
        at_start = last_seq == 0 and prev_mac == GENESIS and head.head_mac is None
        if at_start:  # reset to the start after genesis: refused
            refused = not genesis and state.has_marker(work, genesis_marker(deployment))
        else:
            # A head without a MAC is a head from before schema 0003, accepted only until
            # the genesis entry (written by the upgrading `init`) MACs it; after, tampering.
            refused = not head_is_valid(work, deployment, last_seq, prev_mac, head.head_mac) and (
                head.head_mac is not None
                or state.has_marker(work, genesis_marker(deployment))
                or not _legacy_head_ok(conn, last_seq, prev_mac)
            )
        if refused:
            raise AuditBroken()
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
        conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_mac": mac, "new_head_mac": head_mac(work, deployment, seq, mac)})
        for observer in self.observers:
            observer(event)


def _legacy_head_ok(conn: Any, seq: int, mac: str) -> bool:
    """A head written before head MACs existed (schema < 0003) is accepted once,
    when it matches the last entry; the next append MACs it."""
    last = conn.execute(select(AuditEntry.seq, AuditEntry.mac).order_by(AuditEntry.seq.desc()).limit(1)).one_or_none()
    return last is not None and last.seq == seq and hmac.compare_digest(last.mac, mac)


# Built once: appends run on every audited request.
_LOCK_HEAD = select(AuditHead.seq, AuditHead.mac, AuditHead.head_mac).where(AuditHead.id == 1).with_for_update()
_INSERT_ENTRY = insert(AuditEntry)
_MOVE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == 1)
    .values(seq=bindparam("new_seq"), mac=bindparam("new_mac"), head_mac=bindparam("new_head_mac"))
)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_mac: str
    first_bad_seq: int | None = None
    reason: str | None = None


def verify(
    db: Session, work: Work, recorded_head: str | None = None, deployment: str | None = None, since: int = 1
) -> VerifyResult:
    """Recompute the chain. ``recorded_head`` is a head MAC recorded outside the
    appliance earlier: it must still be in the chain, or entries were cut from
    the end together with a rollback of the head row (which the head's MAC alone
    cannot tell from an older genuine head).

    With ``deployment``, the head row must exist and carry a valid MAC, and a log
    whose genesis was recorded in the token must not be empty.

    With ``since``, the chain is checked from that entry to the head: the entry's
    own ``prev_mac`` is the anchor, trusted only because the entry's MAC (which
    covers it) is recomputed and checked like every other."""
    seen_recorded = recorded_head is None
    prev_mac = GENESIS
    expected_seq = since
    checked = 0
    query = select(AuditEntry).where(AuditEntry.seq >= since).order_by(AuditEntry.seq)
    for entry in db.execute(query).scalars():
        if expected_seq == since and since > 1:
            prev_mac = entry.prev_mac  # checked below with the entry's MAC
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
    if deployment is not None:
        if since == 1 and checked == 0 and state.has_marker(work, genesis_marker(deployment)):
            return VerifyResult(
                False, 0, prev_mac, 1, "the log is empty but its genesis entry was written: entries were deleted"
            )
        if head is None:
            return VerifyResult(
                False, checked, prev_mac, checked + 1, "the head row is missing: entries may have been cut from the end"
            )
        at_start = head.seq == 0 and head.mac == GENESIS and head.head_mac is None
        if (
            not at_start
            and not head_is_valid(work, deployment, head.seq, head.mac, head.head_mac)
            and (head.head_mac is not None or state.has_marker(work, genesis_marker(deployment)))
        ):
            return VerifyResult(False, checked, prev_mac, head.seq, "the head row was modified (MAC mismatch)")
    last = since - 1 + checked
    if head is not None and since > 1 and checked == 0 and head.seq >= since:
        return VerifyResult(False, 0, prev_mac, since, f"entry {since} is missing")
    if head is not None and since > 1 and head.seq < since:
        return VerifyResult(False, 0, prev_mac, since, f"there is no entry {since}: the log ends at {head.seq}")
    if head is not None and (head.seq != last or (head.mac != prev_mac and (checked or since == 1))):
        return VerifyResult(
            False,
            checked,
            prev_mac,
            last + 1 if head.seq > last else head.seq,
            f"the log ends at entry {last} but its head says {head.seq}: entries were removed from the end",
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
