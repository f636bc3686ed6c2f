"""What references each root version, counted from the data itself.

- kek: every registry column (appliance/keyops/registry.py), by the label in each
  blob's own header (a label column a database writer edits does not hide a blob);
- bind: every ``label:hex`` MAC made with the bind root (public-key and wrapped-key
  bindings, row MACs, session idle MACs, one-time token and login ticket MACs,
  recovery MACs);
- audit: the audit entries' key labels and the head's MAC;
- pepper: users' password hashes and PIN keys;
- ukw: users whose key pair was made while the version was the newest, known from
  the rotation jobs that replaced it (``None``: unknown, and retirement is refused).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, func, or_, select

from appliance.models import AuditEntry, Base, KeyJob, User
from hsm.labels import RootKind, parse_label

if TYPE_CHECKING:
    from appliance.core import Appliance

# (table, column) of every MAC stored as "label:hex".
BIND_MACS: tuple[tuple[str, str], ...] = (
    ("users", "public_key_mac"),
    ("users", "row_mac"),
    ("sessions", "row_mac"),
    ("sessions", "seen_mac"),
    ("vaults", "row_mac"),
    ("vault_members", "wrapped_key_mac"),
    ("vault_members", "row_mac"),
    ("folders", "row_mac"),
    ("folder_access", "row_mac"),
    ("folder_keys", "wrapped_key_mac"),
    ("folder_keys", "row_mac"),
    ("one_time_tokens", "mac"),
    ("login_tickets", "mac"),
    ("recovery_config", "mac"),
    ("recovery_config", "share_prints"),
    ("recovery_escrows", "mac"),
    ("sends", "mac"),
    ("sends", "wrapped_key_mac"),
)
AUDIT_MACS: tuple[tuple[str, str], ...] = (("audit_head", "head_mac"),)


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _mac_counts(app: Appliance, label: str, columns: tuple[tuple[str, str], ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with app.db.read() as db:
        for table, column in columns:
            col = _table(table).c[column]
            pattern = f"%{label}:%" if column == "share_prints" else f"{label}:%"
            n = int(db.execute(select(func.count()).where(col.like(pattern))).scalar_one())
            if n:
                key = f"{table}.{column}"
                counts[key] = counts.get(key, 0) + n
    return counts


def kek_usage(app: Appliance) -> dict[str, dict[str, int]]:
    """{label: {table.column: blobs}} for every KEK-sealed blob."""
    from appliance.keyops.movers import kek_movers

    usage: dict[str, dict[str, int]] = {}
    for mover in kek_movers():
        for label, n in mover.usage(app).items():
            usage.setdefault(label, {})[mover.name] = n
    return usage


def _ukw_counts(app: Appliance, label: str, version: int) -> dict[str, int] | None:
    """Users whose pair was made while ``label`` was the newest ukw version."""
    parsed_next = f"coffre-ukw-v{version + 1}"
    with app.db.read() as db:
        start = None
        if version > 1:
            start = db.execute(select(KeyJob.switched_at).where(KeyJob.kind == "ukw", KeyJob.target == label)).scalar()
            if start is None:
                return None
        end = db.execute(select(KeyJob.switched_at).where(KeyJob.kind == "ukw", KeyJob.target == parsed_next)).scalar()
        query = select(func.count()).where(User.private_key_blob.is_not(None))
        if start is not None:
            query = query.where(User.key_created_at >= start)
        if end is not None:
            query = query.where(or_(User.key_created_at.is_(None), User.key_created_at < end))
        n = int(db.execute(query).scalar_one())
    return {"users.private_key_blob": n} if n else {}


def references(app: Appliance, label: str, kek: dict[str, dict[str, int]] | None = None) -> dict[str, int] | None:
    """Rows referencing ``label`` per table.column; ``None`` when it cannot be known."""
    parsed = parse_label(label)
    if parsed is None:
        return {}
    kind, version = parsed
    if kind is RootKind.KEK:
        return dict((kek if kek is not None else kek_usage(app)).get(label, {}))
    if kind is RootKind.BIND:
        return _mac_counts(app, label, BIND_MACS)
    if kind is RootKind.AUDIT:
        counts = _mac_counts(app, label, AUDIT_MACS)
        with app.db.read() as db:
            n = int(db.execute(select(func.count()).where(AuditEntry.key_label == label)).scalar_one())
        if n:
            counts["audit_log.key_label"] = n
        return counts
    if kind is RootKind.PEPPER:
        counts = {}
        with app.db.read() as db:
            columns = ((User.password_pepper, "users.password_pepper"), (User.pin_pepper, "users.pin_pepper"))
            for column, name in columns:
                n = int(db.execute(select(func.count()).where(column == label)).scalar_one())
                if n:
                    counts[name] = n
        return counts
    return _ukw_counts(app, label, version)


def root_versions(app: Appliance) -> list[dict[str, Any]]:
    """Every root version: on the token (current / old) or gone from it (retired),
    with its references."""
    found = app.keystore.list_roots()
    kek = kek_usage(app)
    out: list[dict[str, Any]] = []
    for kind in RootKind:
        versions = {r.version: r.label for r in found if r.kind is kind}
        if not versions:
            continue
        newest = max(versions)
        for version in range(1, newest + 1):
            label = versions.get(version, f"coffre-{kind.value}-v{version}")
            if version not in versions:
                state = "retired"
                refs: dict[str, int] | None = references(app, label, kek)
            else:
                state = "current" if version == newest else "old"
                refs = references(app, label, kek)
            out.append(
                {
                    "kind": kind.value,
                    "label": label,
                    "version": version,
                    "state": state,
                    "references": refs,
                    "referenced": None if refs is None else sum(refs.values()),
                }
            )
    return out


def referenced_labels(app: Appliance) -> list[str]:
    """Every root label something in the database references (backups name them)."""
    return sorted(v["label"] for v in root_versions(app) if v["referenced"] is None or v["referenced"] > 0)


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True)
