"""What `coffre status` reports: module, token, root keys, what each KEK protects,
database and counts, as one structure (the CLI prints it as tables or JSON)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from appliance import schema
from appliance.core import Appliance
from appliance.mail import outbox_state
from appliance.models import AuditEntry, Item, Session, User, Vault, VaultMember
from hsm.errors import HsmError
from hsm.labels import RootKind


def kek_usage(app: Appliance) -> Counter[str]:
    """How many sealed blobs each KEK version protects."""
    usage: Counter[str] = Counter()
    with app.db.read() as db:
        for label, count in db.execute(
            select(User.kek_label, func.count()).where(User.kek_label.is_not(None)).group_by(User.kek_label)
        ):
            usage[label] += count
        for label, count in db.execute(select(Session.kek_label, func.count()).group_by(Session.kek_label)):
            usage[label] += count
    return usage


def _hsm(app: Appliance) -> dict[str, Any]:
    s = app.settings
    hsm: dict[str, Any] = {"module": s.hsm.module, "token_label": s.hsm.token_label, "token": None, "error": None}
    roots: list[dict[str, Any]] = []
    try:
        found = app.keystore.list_roots()
        token = app.keystore.pool.token
        hsm["token"] = {"label": token.label, "manufacturer": token.manufacturer_id, "model": token.model}
        from appliance.keyops.refs import root_versions

        versions = root_versions(app)
        present = {r.kind for r in found}
        for kind in RootKind:
            if kind not in present:
                roots.append({"kind": kind.value, "label": None, "version": None, "current": False, "sealed": None})
        for v in versions:
            # state: current / old (on the token) / retired (destroyed); references
            # per table, counted from the data (None: cannot be known).
            roots.append(
                {
                    "kind": v["kind"],
                    "label": v["label"],
                    "version": v["version"],
                    "current": v["state"] == "current",
                    "sealed": v["referenced"] if v["kind"] == RootKind.KEK.value else None,
                    "state": v["state"],
                    "references": v["references"],
                    "referenced": v["referenced"],
                }
            )
        hsm["unwrap_template"] = _unwrap_template(app)
    except HsmError as exc:
        hsm["error"] = str(exc)
    hsm["roots"] = roots
    return hsm


def _unwrap_template(app: Appliance) -> dict[str, Any]:
    """Whether the token enforces the user-key root's unwrap template (probed)."""
    from hsm.policy import template_policy

    try:
        with app.keystore.work() as work:
            policy = template_policy(work)
    except HsmError as exc:  # e.g. no user-key root yet: run `coffre init`
        return {"enforced": None, "detail": str(exc)}
    return {"enforced": policy.enforced, "detail": policy.detail}


def report(app: Appliance) -> dict[str, Any]:
    """Everything `coffre status` shows. Root entries with ``label`` None are missing
    (run `coffre init`); ``sealed`` counts the blobs a KEK version protects."""
    s = app.settings
    url = s.database_url.split("@")[-1] if "@" in s.database_url else s.database_url
    with app.db.read() as db:

        def count(model: type) -> int:
            return int(db.execute(select(func.count()).select_from(model)).scalar_one())

        counts = {
            "users": count(User),
            "vaults": count(Vault),
            "memberships": count(VaultMember),
            "items": count(Item),
            "sessions": count(Session),
            "audit_entries": count(AuditEntry),
        }
    return {
        "config": str(s.path) if s.path else None,
        "hsm": _hsm(app),
        "database": {
            "url": url,
            "schema": schema.current_revision(app.db.engine),
            "head": schema.head_revision(),
        },
        "counts": counts,
        "audit": audit_report(app),
        "mail": mail_report(app),
    }


def mail_report(app: Appliance) -> dict[str, Any]:
    state = outbox_state(app)
    return {
        "configured": state.configured,
        "pending": state.pending,
        "sent": state.sent,
        "failed": state.failed,
        "oldest_pending_age_seconds": None if state.oldest_pending_age is None else round(state.oldest_pending_age, 1),
        "last_error": state.last_error,
        "last_error_age_seconds": None if state.last_error_at is None else round(app.clock() - state.last_error_at, 1),
    }


def mail_lines(mail: dict[str, Any]) -> list[tuple[str, str]]:
    """The outbox as (setting, value) pairs."""
    if not mail["configured"] and not (mail["pending"] or mail["sent"] or mail["failed"]):
        return [("mail", "off ([mail] not set; links are handed to the sender)")]
    rows = [("mail", "on" if mail["configured"] else "off ([mail] not set)")]
    age = mail["oldest_pending_age_seconds"]
    rows.append(("mail queued", f"{mail['pending']}" + (f", oldest {age:.0f} s ago" if age is not None else "")))
    rows.append(("mail sent", str(mail["sent"])))
    rows.append(("mail failed", f"{mail['failed']} (given up after retries)"))
    if mail["last_error"]:
        rows.append(("mail error", f"{mail['last_error']} ({mail['last_error_age_seconds']:.0f} s ago)"))
    else:
        rows.append(("mail error", "none"))
    return rows


def audit_report(app: Appliance) -> dict[str, Any]:
    """Forwarding (destination, cursor, lag, last error) and the last anchor entry."""
    from appliance.auditops import cursors
    from appliance.auditops.forward import state

    now = time.time()
    fwd = state(app.db, app.settings.audit.forward, now)
    with app.db.read() as db:
        anchor = cursors.get(db, cursors.ANCHOR)
        anchor_info = (
            {"seq": anchor.seq, "age_seconds": round(now - anchor.updated_at, 1)}
            if anchor is not None and anchor.seq > 0
            else None
        )
    return {
        "head_seq": fwd.head,
        "forward": {
            "destination": fwd.destination,
            "cursor": fwd.cursor,
            "lag_entries": fwd.lag,
            "oldest_unsent_age_seconds": None if fwd.oldest_unsent_age is None else round(fwd.oldest_unsent_age, 1),
            "last_error": fwd.last_error,
        },
        "last_anchor": anchor_info,
    }


def collect(app: Appliance) -> list[str]:
    """The report as ``key: value`` lines (the admin console's system status page)."""
    r = report(app)
    hsm = r["hsm"]
    lines = [f"config:        {r['config']}", f"HSM module:    {hsm['module']}", f"token label:   {hsm['token_label']}"]
    token = hsm["token"]
    if token is None:
        lines.append(f"HSM:           UNAVAILABLE ({hsm['error']})")
    else:
        lines.append(f"token:         {token['label']} (manufacturer {token['manufacturer']}, model {token['model']})")
        for root in hsm["roots"]:
            if root["label"] is None:
                lines.append(f"root {root['kind']:<7}  MISSING: run `coffre init`")
                continue
            state = f" ({root.get('state', 'current' if root['current'] else 'old')})"
            sealed = f", protects {root['sealed']} sealed blobs" if root["sealed"] is not None else ""
            refs = root.get("referenced")
            referenced = "" if root["sealed"] is not None else (f", {refs} references" if refs is not None else "")
            lines.append(f"root {root['kind']:<7}  {root['label']}{state}{sealed}{referenced}")
        policy = hsm.get("unwrap_template") or {}
        state = {True: "enforced", False: "NOT enforced", None: "unknown"}[policy.get("enforced")]
        lines.append(f"unwrap templates: {state} ({policy.get('detail', '')})")
    db = r["database"]
    lines.append(f"database:      {db['url']}")
    lines.append(f"schema:        {db['schema']} (head {db['head']})")
    c = r["counts"]
    lines.append(
        f"counts:        users {c['users']}, vaults {c['vaults']}, memberships {c['memberships']}, "
        f"items {c['items']}, sessions {c['sessions']}, audit entries {c['audit_entries']}"
    )
    lines.extend(f"{k + ':':<15}{v}" for k, v in audit_lines(r["audit"]))
    lines.extend(f"{k + ':':<15}{v}" for k, v in mail_lines(r["mail"]))
    return lines


def audit_lines(audit: dict[str, Any]) -> list[tuple[str, str]]:
    """Forwarding and anchors as (setting, value) pairs."""
    fwd = audit["forward"]
    rows = [("head", f"entry {audit['head_seq']}")]
    if fwd["destination"] is None:
        rows.append(("forwarding", "off ([audit] forward not set)"))
    else:
        age = fwd["oldest_unsent_age_seconds"]
        lag = f"{fwd['lag_entries']} entries" + (f", oldest unsent {age:.0f} s ago" if age is not None else "")
        rows += [
            ("forwarding to", fwd["destination"]),
            ("forwarded up to", f"entry {fwd['cursor']}"),
            ("forwarding lag", lag),
            ("last error", fwd["last_error"] or "none"),
        ]
    anchor = audit["last_anchor"]
    rows.append(("last anchor", f"entry {anchor['seq']}, {anchor['age_seconds']:.0f} s ago" if anchor else "none yet"))
    return rows
