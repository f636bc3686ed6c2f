"""What references each root version, counted from the data itself.

- kek: every registry column (appliance/keyops/registry.py), by the label in each
  blob's own header (a label column a database writer edits does not hide a blob);
- bind: every ``label:hex`` MAC made with the bind root (public-key and wrapped-key
  bindings, row MACs, session idle MACs, one-time token and login ticket MACs,
  recovery MACs);
- audit: the audit entries' key labels and the head's MAC;
- pepper: users' password hashes and PIN keys;
- ukw: users' private keys and recovery escrows, by the version each inner layer
  names (appliance/keyops/ukw.py; ``None``: unknown, and retirement is refused).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, func, select

from appliance.models import AuditEntry, Base, User
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


def _ukw_counts(app: Appliance, label: str, census: Any = None) -> dict[str, int] | None:
    """Private keys and escrows whose inner layer ``label`` wraps, read from the data
    (``census``: one ``ukw.census`` for several versions, else taken here)."""
    from appliance.keyops import ukw

    return ukw.references(app, label, census)


def references(
    app: Appliance, label: str, kek: dict[str, dict[str, int]] | None = None, census: Any = None
) -> dict[str, int] | None:
    """Rows referencing ``label`` per table.column; ``None`` when it cannot be known."""
    parsed = parse_label(label)
    if parsed is None:
        return {}
    kind, _version = parsed
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
    return _ukw_counts(app, label, census)


def root_versions(app: Appliance) -> list[dict[str, Any]]:
    """Every root version: on the token (current / old) or gone from it (retired),
    with its references."""
    from appliance.keyops import ukw

    found = app.keystore.list_roots()
    kek = kek_usage(app)
    # One census of the private keys for every ukw version (each costs a token
    # operation per user), taken only when there is a ukw root.
    census = ukw.census(app) if any(r.kind is RootKind.UKW for r in found) else None
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
                refs: dict[str, int] | None = references(app, label, kek, census)
            else:
                state = "current" if version == newest else "old"
                refs = references(app, label, kek, census)
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
