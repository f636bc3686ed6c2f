"""`coffre backup` and `coffre restore`: a consistent, authenticated copy of the
database, restorable onto an empty database with the same token (or a clone).

What a backup leaves out, on purpose: sessions, login tickets and rate-limit hits.
They are short-lived, and a session brought back by a restore would be a logged-out
session alive again; after a restore everyone logs in.

A restore refuses a backup that fails its MAC, names a root key the token lacks, or
comes from a newer schema; applies the migrations when it is older; checks every
access row against the anchor counters recorded at backup time, then re-anchors it
under the token's current counters (the backup is authentic, and restoring it is the
operator's decision, audited as ``backup.restored``); and ends with `audit verify`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, delete, func, insert, select, text

from appliance import schema
from appliance.audit import VerifyResult, verify
from appliance.backup.archive import BackupRefused, read, table_lines, write
from appliance.folders.tree import parents_first
from appliance.integrity.rows import BUCKETS, SPECS, Domain
from appliance.models import AuditHead, User, Vault

if TYPE_CHECKING:
    from appliance.core import Appliance

SKIPPED = {"sessions", "login_tickets", "rate_limit_hits", "alembic_version"}
FORMAT = 1


def _referenced_roots(app: Appliance) -> list[str]:
    """Every root label a row names: KEK seals, MAC labels, peppers, audit keys."""
    labels: set[str] = set()
    with app.db.read() as db:
        for (label,) in db.execute(select(User.kek_label).distinct()):
            labels.add(label)
        for (label,) in db.execute(select(User.password_pepper).distinct()):
            labels.add(label)
        for (label,) in db.execute(select(User.pin_pepper).distinct()):
            labels.add(label)
        for (label,) in db.execute(text("SELECT DISTINCT key_label FROM audit_log")):
            labels.add(label)
        for model in (User, Vault):
            for (mac,) in db.execute(select(model.row_mac).distinct()):
                labels.add((mac or "").partition(":")[0])
    # And whatever else references a root version (every KEK-sealed column of the
    # registry, by each blob's header; every bind MAC): appliance/keyops/refs.py.
    from appliance.keyops.refs import referenced_labels

    labels.update(referenced_labels(app))
    return sorted(label for label in labels if label and label.startswith("coffre-"))


def backup(app: Appliance, out: Path) -> dict[str, Any]:
    """Write the backup; return its manifest."""
    engine = app.db.engine
    meta = MetaData()
    meta.reflect(engine)
    tables: dict[str, list[bytes]] = {}
    with app.keystore.work() as work:
        # One read transaction: a consistent snapshot (SQLite WAL; REPEATABLE READ on PostgreSQL).
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            for table in meta.sorted_tables:
                if table.name in SKIPPED:
                    continue
                rows = [dict(r._mapping) for r in conn.execute(select(table))]
                if table.name == "folders":  # restored in this order: a parent before its children
                    rows = parents_first(rows)
                tables[table.name] = list(table_lines(iter(rows)))
            head = conn.execute(select(AuditHead.seq, AuditHead.mac)).one_or_none()
            conn.rollback()
        manifest = {
            "format": FORMAT,
            "schema": revision,
            "deployment": app.integrity.deployment(),
            "roots": _referenced_roots(app),
            "audit_head": {"seq": head.seq, "mac": head.mac} if head else None,
            "anchors": {d.value: app.integrity.counters(work, d) for d in Domain},
        }
        manifest = write(out, work, manifest, tables)
        with app.db.write() as db:
            app.audit.append(db, work, "backup.created", actor="cli", tables=len(tables), schema=revision)
    return manifest


def restore(app: Appliance, path: Path) -> VerifyResult:
    with app.keystore.work() as work:
        archive = read(path, work)
        manifest = archive.manifest
    known = _revisions()
    if manifest["schema"] not in known:
        raise BackupRefused(f"the backup's schema {manifest['schema']} is newer than this version of Coffre")
    engine = app.db.engine
    if schema.current_revision(engine) is not None and _has_users(app):
        raise BackupRefused("the target database is not empty: restore onto a new one")
    schema.upgrade(engine, manifest["schema"])
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        for table in reversed(meta.sorted_tables):
            if table.name != "alembic_version":
                conn.execute(delete(table))
        for table in meta.sorted_tables:
            rows = archive.tables.get(table.name)
            if rows:
                conn.execute(insert(table), rows)
    schema.upgrade(engine)
    app.integrity._deployment = None  # the restored deployment id
    for domain in Domain:
        accepted = manifest["anchors"][domain.value]
        if len(accepted) != BUCKETS:
            raise BackupRefused("the backup's anchor counters are malformed")
        app.integrity.repair(domain, list(range(BUCKETS)), accepted)
    with app.keystore.work() as work, app.db.write() as db:
        app.audit.append(db, work, "backup.restored", actor="cli", schema=manifest["schema"])
    with app.keystore.work() as work, app.db.read() as db:
        return verify(db, work, None, app.integrity.deployment())


def _has_users(app: Appliance) -> bool:
    try:
        with app.db.read() as db:
            return bool(db.execute(select(func.count()).select_from(User)).scalar_one())
    except Exception:  # noqa: BLE001 - no users table yet: empty
        return False


def _revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(schema._config())
    return {rev.revision for rev in script.walk_revisions()}


__all__ = ["SPECS", "BackupRefused", "backup", "restore"]
