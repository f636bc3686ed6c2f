"""Movers: how a job finds the rows it must change and changes one row safely.

A mover lists rows still under an old version (``pending`` after a cursor, cheap;
``stale``, re-read from the data itself for the final sweep), computes a row's new
values in the token (``compute``, no transaction held) and writes them with a
compare-and-swap on the old value (``apply``): a request that changed the row
meanwhile wins and the job re-reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Table, bindparam, func, select, update

from appliance.keyops.registry import Row, SealedColumn
from appliance.models import Base
from hsm.envelope import HEADER_PREFIX, key_ref_of

if TYPE_CHECKING:
    from appliance.core import Appliance
    from hsm.keystore import Work

SCAN_CHUNK = 2000


class Mover(Protocol):
    name: str
    table: str

    def count(self, app: Appliance, target: str) -> int: ...

    def pending(self, app: Appliance, target: str, after: str | None, limit: int) -> list[Row]: ...

    def stale(self, app: Appliance, target: str) -> list[str]: ...

    def rows(self, app: Appliance, ids: list[str]) -> list[Row]: ...

    def row_id(self, row: Row) -> str: ...

    def compute(self, app: Appliance, work: Work, row: Row, target: str) -> dict[str, Any] | None: ...

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool: ...

    def apply_many(self, db: Any, work: Work, changes: list[tuple[Row, dict[str, Any]]]) -> list[str]: ...


class SealedMover:
    """A KEK-sealed column (registry entry): re-seal its blob under the target KEK."""

    def __init__(self, entry: SealedColumn) -> None:
        self.entry = entry
        self.name = entry.name
        self.table = entry.table
        self._t: Table = Base.metadata.tables[entry.table]

    def _col(self, name: str) -> Any:
        return self._t.c[name]

    def _columns(self) -> list[Any]:
        e = self.entry
        names = [e.id_column, e.blob_column, *e.reads]
        if e.label_column:
            names.append(e.label_column)
        return [self._col(n) for n in dict.fromkeys(names)]

    def row_id(self, row: Row) -> str:
        return str(row[self.entry.id_column])

    def _id_value(self, text: str) -> Any:
        return int(text) if self._col(self.entry.id_column).type.python_type is int else text

    def labels(self, app: Appliance) -> Iterator[tuple[str, str | None]]:
        """(row id, KEK label from the blob's own header) for every non-empty blob:
        the data itself, not the label column a database writer could edit."""
        e = self.entry
        ident, blob = self._col(e.id_column), self._col(e.blob_column)
        after: Any = None
        while True:
            query = select(ident, func.substr(blob, 1, HEADER_PREFIX)).where(blob.is_not(None))
            if after is not None:
                query = query.where(ident > after)
            with app.db.read() as db:
                chunk = db.execute(query.order_by(ident).limit(SCAN_CHUNK)).all()
            for row_id, prefix in chunk:
                if prefix:
                    yield str(row_id), key_ref_of(bytes(prefix))
            if len(chunk) < SCAN_CHUNK:
                return
            after = chunk[-1][0]

    def usage(self, app: Appliance) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, label in self.labels(app):
            key = label or "?"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def count(self, app: Appliance, target: str) -> int:
        return sum(1 for _, label in self.labels(app) if label != target)

    def stale(self, app: Appliance, target: str) -> list[str]:
        return [row_id for row_id, label in self.labels(app) if label != target]

    def pending(self, app: Appliance, target: str, after: str | None, limit: int) -> list[Row]:
        e = self.entry
        ident, blob = self._col(e.id_column), self._col(e.blob_column)
        query = select(*self._columns()).where(blob.is_not(None))
        if e.label_column:
            label = self._col(e.label_column)
            query = query.where(label.is_not(None), label != target)
        if after is not None:
            query = query.where(ident > self._id_value(after))
        with app.db.read() as db:
            rows: list[Row] = [dict(r._mapping) for r in db.execute(query.order_by(ident).limit(limit))]
        # Without a label column, rows already under the target come too: ``compute``
        # skips them (their header says) and the cursor still moves past them.
        return rows

    def rows(self, app: Appliance, ids: list[str]) -> list[Row]:
        if not ids:
            return []
        ident = self._col(self.entry.id_column)
        with app.db.read() as db:
            query = select(*self._columns()).where(ident.in_([self._id_value(i) for i in ids]))
            rows: list[Row] = [dict(r._mapping) for r in db.execute(query)]
            return rows

    def compute(self, app: Appliance, work: Work, row: Row, target: str) -> dict[str, Any] | None:
        e = self.entry
        old = row[e.blob_column]
        if not old:
            return None
        if key_ref_of(bytes(old[:HEADER_PREFIX])) == target:
            return None  # already there (a request re-sealed it)
        new = work.reseal_to(bytes(old), e.context(row), target)
        values: dict[str, Any] = {e.blob_column: new}
        if e.label_column:
            values[e.label_column] = target
        if e.also is not None:
            values.update(e.also(app, work, row, new))
        return values

    def apply_many(self, db: Any, work: Work, changes: list[tuple[Row, dict[str, Any]]]) -> list[str]:
        """Compare-and-swap many rows in one statement (executemany); returns the ids
        of rows a request changed meanwhile (left as they are)."""
        if not changes:
            return []
        e = self.entry
        if e.also is not None:  # other columns change too: one statement per row
            return [self.row_id(row) for row, values in changes if not self.apply(db, work, row, values)]
        ident, blob = self._col(e.id_column), self._col(e.blob_column)
        new_values: dict[str, Any] = {e.blob_column: bindparam("_new")}
        if e.label_column:
            new_values[e.label_column] = bindparam("_label")
        statement = update(self._t).where(ident == bindparam("_id"), blob == bindparam("_old")).values(**new_values)
        params = [
            {
                "_id": row[e.id_column],
                "_old": row[e.blob_column],
                "_new": values[e.blob_column],
                "_label": values.get(e.label_column or "", None),
            }
            for row, values in changes
        ]
        result = db.execute(statement, params)
        if result.rowcount == len(changes):
            return []
        # Some rows changed meanwhile: the ones not holding our new blob lost.
        wanted = {str(p["_id"]): p["_new"] for p in params}
        ids = [p["_id"] for p in params]
        held = {str(i): b for i, b in db.execute(select(ident, blob).where(ident.in_(ids)))}
        return [i for i, new in wanted.items() if held.get(i) != new]

    def apply(self, db: Any, work: Work, row: Row, values: dict[str, Any]) -> bool:
        e = self.entry
        result = db.execute(
            update(self._t)
            .where(self._col(e.id_column) == row[e.id_column], self._col(e.blob_column) == row[e.blob_column])
            .values(**values)
        )
        return bool(result.rowcount == 1)


def kek_movers() -> list[SealedMover]:
    from appliance.keyops.registry import SEALED

    return [SealedMover(entry) for entry in SEALED]
