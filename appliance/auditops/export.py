"""Audit entries as a SIEM reads them: JSON lines, CEF, or RFC 5424 syslog.

Every format carries everything the chain's MAC covers (seq, the exact
timestamp, event, actor, target, address, details text, key label, previous
MAC) and the MAC itself, so a SIEM can check continuity on its own: each
entry's ``prev_mac`` is the previous entry's ``mac``, and the sequence has no
gap. (Recomputing a MAC needs the HSM audit key: `coffre audit verify`.)
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.models import AuditEntry

VENDOR = "Coffre"
PRODUCT = "Coffre"
VERSION = "0.1.0"
# RFC 5424 SD-ID: name@private-enterprise-number. 32473 is the number RFC 5612
# reserves for documentation; a deployment with its own number can change it.
SD_ID = "coffre@32473"
APP_NAME = "coffre"
# facility 13 (log audit), severity 6 (informational) / 4 (warning)
FACILITY = 13
FORMATS = ("jsonl", "cef", "rfc5424")


def record(entry: AuditEntry) -> dict[str, Any]:
    """One entry as plain values (``ts`` exact, as MACed; ``time`` the same instant in RFC 3339)."""
    return {
        "seq": entry.seq,
        "time": _rfc3339(entry.ts),
        "ts": entry.ts,
        "event": entry.event,
        "actor": entry.actor,
        "target": entry.target,
        "address": entry.client_addr,
        "details": entry.details,
        "key_label": entry.key_label,
        "prev_mac": entry.prev_mac,
        "mac": entry.mac,
    }


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_warning(event: str) -> bool:
    return any(word in event for word in ("fail", "locked", "broken", "denied", "tamper", "refused"))


def to_jsonl(rec: dict[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# --- CEF (ArcSight Common Event Format, rev. 25) ---------------------------------


def cef_header_escape(value: str) -> str:
    """Header fields: backslash and pipe are escaped."""
    return value.replace("\\", "\\\\").replace("|", "\\|")


def cef_value_escape(value: str) -> str:
    """Extension values: backslash and equals are escaped, line breaks written \\n / \\r."""
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def to_cef(rec: dict[str, Any]) -> str:
    severity = "7" if is_warning(rec["event"]) else "3"
    header = [
        "CEF:0",
        cef_header_escape(VENDOR),
        cef_header_escape(PRODUCT),
        cef_header_escape(VERSION),
        cef_header_escape(rec["event"]),
        cef_header_escape(rec["event"]),
        severity,
    ]
    ext: list[tuple[str, str | None]] = [
        ("externalId", str(rec["seq"])),
        ("rt", str(round(rec["ts"] * 1000))),
        ("act", rec["event"]),
        ("suser", rec["actor"]),
        ("src", rec["address"]),
        ("msg", rec["details"]),
        ("cs1Label", "target"),
        ("cs1", rec["target"]),
        ("cs2Label", "keyLabel"),
        ("cs2", rec["key_label"]),
        ("cs3Label", "prevMac"),
        ("cs3", rec["prev_mac"]),
        ("cs4Label", "mac"),
        ("cs4", rec["mac"]),
        ("cs5Label", "ts"),
        ("cs5", repr(rec["ts"])),
    ]
    body = " ".join(f"{key}={cef_value_escape(value)}" for key, value in ext if value is not None)
    return "|".join(header) + "|" + body


# --- RFC 5424 -----------------------------------------------------------------


def sd_escape(value: str) -> str:
    """PARAM-VALUE: '"', '\\' and ']' are escaped with a backslash (RFC 5424 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(value: str, limit: int) -> str:
    """HOSTNAME / APP-NAME / MSGID: PRINTUSASCII (33-126), nil when empty."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def to_rfc5424(rec: dict[str, Any], hostname: str | None = None) -> str:
    severity = 4 if is_warning(rec["event"]) else 6
    pri = FACILITY * 8 + severity
    params = [
        ("seq", str(rec["seq"])),
        ("ts", repr(rec["ts"])),
        ("event", rec["event"]),
        ("actor", rec["actor"]),
        ("target", rec["target"]),
        ("address", rec["address"]),
        ("details", rec["details"]),
        ("keyLabel", rec["key_label"]),
        ("prevMac", rec["prev_mac"]),
        ("mac", rec["mac"]),
    ]
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(v)}"' for k, v in params if v is not None) + "]"
    host = _printable(hostname if hostname is not None else socket.gethostname(), 255)
    msgid = _printable(rec["event"], 32)
    summary = f"{rec['event']} actor={rec['actor'] or '-'} target={rec['target'] or '-'}"
    return f"<{pri}>1 {rec['time']} {host} {APP_NAME} - {msgid} {sd} {summary}"


FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "jsonl": to_jsonl,
    "cef": to_cef,
    "rfc5424": to_rfc5424,
}


def entries_after(db: Session, after: int, limit: int) -> list[AuditEntry]:
    """Up to ``limit`` entries with seq > ``after``, in order."""
    query = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(limit)
    return list(db.execute(query).scalars())


def iter_records(read: Callable[[], Any], since: int = 1, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry from ``since`` on, read in batches (constant memory)."""
    after = since - 1
    while True:
        with read() as db:
            rows = [record(e) for e in entries_after(db, after, batch)]
        if not rows:
            return
        yield from rows
        after = rows[-1]["seq"]
