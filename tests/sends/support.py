"""Helpers for the send tests: a vault with one item, DB dumps, audit events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.core import Appliance
from appliance.models import AuditEntry, Base

# Storage-independent behaviour runs on SQLite only (the reveal, expiry, shredding and
# concurrency tests run on PostgreSQL too).
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SECRET = "Canary-Pa55word-7f3e91"


def vault_with_item(client: Any, headers: dict[str, str], password: str = SECRET) -> tuple[str, str]:
    vault = client.post("/api/v1/vaults", json={"name": "Team"}, headers=headers).json()["id"]
    r = client.post(
        f"/api/v1/vaults/{vault}/items",
        json={"title": "Bank", "username": "ops", "password": password, "url": "https://bank.example", "notes": "n"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return vault, r.json()["id"]


def token_of(url: str) -> str:
    return url.rsplit("/s/", 1)[1]


def dump(app: Appliance) -> bytes:
    """Every row of every table, values as bytes (what a database dump holds), plus,
    on SQLite, the raw database and WAL files (deleted rows included)."""
    out: list[bytes] = []
    with app.db.read() as db:
        for table in Base.metadata.sorted_tables:
            for row in db.execute(select(table)).all():
                for value in row:
                    out.append(bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode())
    if app.db.is_sqlite:
        path = Path(app.settings.database_url.split("///", 1)[1])
        for f in (path, Path(str(path) + "-wal")):
            if f.exists():
                out.append(f.read_bytes())
    return b"\n".join(out)


def events(app: Appliance, prefix: str = "send.") -> list[str]:
    with app.db.read() as db:
        return list(
            db.execute(select(AuditEntry.event).where(AuditEntry.event.like(prefix + "%")).order_by(AuditEntry.seq))
            .scalars()
            .all()
        )
