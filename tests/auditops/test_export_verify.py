"""Export formats parsed back, verify --since, hourly anchors (in process, real token)."""

from __future__ import annotations

import itertools
import json

from sqlalchemy import update

from appliance.audit import verify
from appliance.auditops import iter_records
from appliance.auditops.anchor import maybe_anchor
from appliance.auditops.export import to_cef, to_jsonl, to_rfc5424
from appliance.models import AuditEntry
from tests.auditops.syslog import parse_cef, parse_rfc5424

NASTY = 'a "quoted" ]bracket[ back\\slash = equals | pipe\nnew line é'


def _append(app, n, **details):
    with app.keystore.work() as work, app.db.write() as db:
        for i in range(n):
            app.audit.append(db, work, "test.event", actor="u-1", target=f"t-{i}", client_addr="10.0.0.7", **details)


def _records(app):
    return list(iter_records(app.db.read, 1, batch=3))


def test_every_format_carries_every_field_and_parses_back(app):
    _append(app, 4, note=NASTY)
    with app.keystore.work() as work, app.db.write() as db:
        app.audit.append(db, work, "login.failed", actor=None, target="x|y=z]", client_addr=None, why=NASTY)
    records = _records(app)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for prev, rec in itertools.pairwise(records):
        assert rec["prev_mac"] == prev["mac"]  # continuity a SIEM can check itself
    for rec in records:
        back = json.loads(to_jsonl(rec))
        assert back == rec
        parsed = parse_rfc5424(to_rfc5424(rec, hostname="node-1"))
        assert parsed["app"] == "coffre" and parsed["hostname"] == "node-1" and parsed["msgid"] == rec["event"]
        assert parsed["facility"] == 13
        assert parsed["severity"] == (4 if rec["event"] == "login.failed" else 6)
        sd = parsed["sd"]["coffre@32473"]
        assert int(sd["seq"]) == rec["seq"] and float(sd["ts"]) == rec["ts"]
        assert sd["details"] == rec["details"] and sd["mac"] == rec["mac"] and sd["prevMac"] == rec["prev_mac"]
        assert sd["keyLabel"] == rec["key_label"]
        assert sd.get("actor") == rec["actor"] and sd.get("target") == rec["target"]
        assert sd.get("address") == rec["address"]
        header, ext = parse_cef(to_cef(rec))
        assert header[1:6] == ["Coffre", "Coffre", "0.1.0", rec["event"], rec["event"]]
        assert int(ext["externalId"]) == rec["seq"] and float(ext["cs5"]) == rec["ts"]
        assert ext["msg"] == rec["details"] and ext["cs4"] == rec["mac"] and ext["cs3"] == rec["prev_mac"]
        assert ext.get("suser") == rec["actor"] and ext.get("src") == rec["address"]
        assert ext.get("cs1") == rec["target"]
    assert json.loads(records[-1]["details"])["why"] == NASTY


def test_cef_header_escapes_pipes_and_backslashes():
    rec = {
        "seq": 1, "time": "2026-01-01T00:00:00.000000Z", "ts": 1.5, "event": "odd|event\\x", "actor": "a=b",
        "target": None, "address": None, "details": "{}", "key_label": "k", "prev_mac": "0", "mac": "1",
    }  # fmt: skip
    header, ext = parse_cef(to_cef(rec))
    assert header[4] == "odd|event\\x" and ext["suser"] == "a=b" and ext["act"] == "odd|event\\x"
    assert "cs1" not in ext


def test_rfc5424_parser_rejects_an_unescaped_bracket():
    import pytest

    with pytest.raises(ValueError):
        parse_rfc5424('<110>1 - h coffre - e [x@1 a="b]c"] m')


def test_verify_since_checks_the_anchor_entry_first(app):
    _append(app, 10)
    deployment = app.integrity.deployment()
    with app.keystore.work() as work, app.db.read() as db:
        full = verify(db, work, None, deployment)
        part = verify(db, work, None, deployment, since=6)
        beyond = verify(db, work, None, deployment, since=99)
    assert full.ok and full.checked == 11  # genesis + 10
    assert part.ok and part.checked == 6 and part.head_mac == full.head_mac
    assert not beyond.ok
    # A forged anchor entry (its prev_mac rewritten) is not trusted: its MAC fails.
    with app.db.write() as db:
        db.execute(update(AuditEntry).where(AuditEntry.seq == 6).values(prev_mac="f" * 64))
    with app.keystore.work() as work, app.db.read() as db:
        forged = verify(db, work, None, deployment, since=6)
        later = verify(db, work, None, deployment, since=7)
    assert not forged.ok and forged.first_bad_seq == 6 and "MAC" in (forged.reason or "")
    assert later.ok  # entries after it still chain to each other


def test_verify_since_sees_a_cut_tail(app):
    _append(app, 5)
    with app.db.write() as db:
        db.query(AuditEntry).filter(AuditEntry.seq == 6).delete()
    with app.keystore.work() as work, app.db.read() as db:
        result = verify(db, work, None, app.integrity.deployment(), since=3)
    assert not result.ok and "removed from the end" in (result.reason or "")


def test_anchor_at_most_once_per_interval_and_only_when_the_log_moved(app):
    now = [1_000_000.0]

    def clock():
        return now[0]

    started = now[0]
    _append(app, 2)
    assert maybe_anchor(app, 3600, started, clock) is None
    now[0] += 3599
    assert maybe_anchor(app, 3600, started, clock) is None
    now[0] += 2
    seq = maybe_anchor(app, 3600, started, clock)
    assert seq == 4
    now[0] += 4000
    assert maybe_anchor(app, 3600, started, clock) is None  # nothing new since the anchor
    _append(app, 1)
    assert maybe_anchor(app, 3600, started, clock) == 6  # due, and the log moved
    assert maybe_anchor(app, 3600, started, clock) is None
    records = _records(app)
    anchor = next(r for r in records if r["event"] == "audit.anchor")
    details = json.loads(anchor["details"])
    assert details["head_seq"] == 3 and details["head_mac"] == records[2]["mac"] == anchor["prev_mac"]
    with app.keystore.work() as work, app.db.read() as db:
        assert verify(db, work, None, app.integrity.deployment()).ok
