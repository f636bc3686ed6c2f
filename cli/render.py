"""Output for people (aligned tables with a header row) and for scripts (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; None prints as "-"."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def status_tables(report: dict[str, Any]) -> str:
    hsm, db = report["hsm"], report["database"]
    token = hsm["token"]
    settings = [
        ("config", report["config"]),
        ("HSM module", hsm["module"]),
        ("token label", hsm["token_label"]),
        (
            "token",
            f"{token['label']} (manufacturer {token['manufacturer']}, model {token['model']})"
            if token
            else f"UNAVAILABLE ({hsm['error']})",
        ),
        ("unwrap templates", _template_line(hsm.get("unwrap_template"))),
        ("database", db["url"]),
        ("schema", f"{db['schema'] or 'none'} (head {db['head']})"),
    ]
    roots = [
        (
            r["kind"],
            r["label"] or "MISSING: run `coffre init`",
            r["version"],
            yes_no(r["current"]) if r["label"] else None,
            r["sealed"],
            r.get("state"),
            "unknown" if r.get("label") and r.get("referenced") is None else r.get("referenced"),
        )
        for r in hsm["roots"]
    ]
    parts = [table(("SETTING", "VALUE"), settings)]
    if roots:
        parts.append(table(("ROOT", "LABEL", "VERSION", "CURRENT", "SEALED BLOBS", "STATE", "REFERENCES"), roots))
    parts.append(table(("RECORDS", "COUNT"), [(k.replace("_", " "), v) for k, v in report["counts"].items()]))
    if "audit" in report:
        from appliance.status import audit_lines

        parts.append(table(("AUDIT", "VALUE"), audit_lines(report["audit"])))
    if "mail" in report:
        from appliance.status import mail_lines

        parts.append(table(("MAIL", "VALUE"), mail_lines(report["mail"])))
    return "\n\n".join(parts)


def _template_line(policy: dict[str, Any] | None) -> str:
    if not policy:
        return "unknown (HSM unavailable)"
    if policy["enforced"] is None:
        return f"unknown ({policy['detail']})"
    state = (
        "enforced" if policy["enforced"] else "NOT enforced: a token-PIN holder with a user's PIN can export that key"
    )
    return f"{state} ({policy['detail']})"


def users_table(users: Sequence[dict[str, Any]]) -> str:
    rows = [(u["id"], u["email"], yes_no(u["is_admin"]), u["status"], yes_no(u["locked"])) for u in users]
    return table(("ID", "EMAIL", "ADMIN", "STATUS", "LOCKED"), rows)
