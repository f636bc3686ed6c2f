"""Engine and transactions (SQLite in WAL mode by default, PostgreSQL by URL).

``Database.write()`` starts a transaction that takes the write lock up front
(``BEGIN IMMEDIATE`` on SQLite) so that concurrent writers queue instead of
failing on a lock upgrade; ``Database.read()`` starts a plain one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appliance.errors import ClientError, Conflict, DatabaseUnavailable

_begin_mode = threading.local()


@event.listens_for(Session, "after_commit")
def _forget_rollback_hooks(session: Session) -> None:
    session.info.pop("on_rollback", None)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = getattr(_begin_mode, "value", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 15},
            pool_size=16,
            max_overflow=16,
        )
        _configure_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(
        url,
        hide_parameters=True,  # no bound values (hashes, ciphertexts, e-mails) in error messages or logs
        pool_size=16,
        max_overflow=8,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite takes one writer at a time and makes the others poll with sleeps
        # (busy_timeout); queueing this process's writers on a lock instead hands
        # the write lock over at once. Other processes still rely on busy_timeout.
        self._write_lock = threading.RLock() if self.is_sqlite else None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _transaction(self, mode: str) -> Iterator[Session]:
        """One transaction; committed on success, rolled back on error.

        Code may ``commit()`` early and then raise (to keep an audit entry or a
        failure counter while refusing the request): nothing is left to roll back.
        """
        _begin_mode.value = mode
        session = self._sessions()
        session.info["writing"] = mode == "IMMEDIATE"
        try:
            yield session
            if session.in_transaction():
                session.commit()
        except BaseException:
            if session.in_transaction():
                session.rollback()
            hooks = session.info.pop("on_rollback", [])
            session.close()
            _begin_mode.value = "DEFERRED"
            # Work that must follow a rollback (e.g. re-anchoring rows whose token
            # counter moved before the commit failed), in transactions of its own.
            for hook in hooks:
                hook()
            raise
        finally:
            session.close()
            _begin_mode.value = "DEFERRED"

    @contextmanager
    def _guarded(self, mode: str) -> Iterator[Session]:
        try:
            with self._transaction(mode) as session:
                yield session
        except IntegrityError as exc:
            raise Conflict("the change conflicts with another one; retry") from exc
        except DataError as exc:
            # e.g. a NUL character or an over-long value that PostgreSQL refuses
            raise ClientError("the request contains a value the database cannot store") from exc
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseUnavailable("the database is unavailable; try again shortly") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise DatabaseUnavailable("the database is unavailable; try again shortly") from exc
            raise

    def read(self) -> Any:
        return self._guarded("DEFERRED")

    @contextmanager
    def write(self) -> Iterator[Session]:
        if self._write_lock is None:
            with self._guarded("IMMEDIATE") as session:
                yield session
            return
        with self._write_lock, self._guarded("IMMEDIATE") as session:
            yield session

    def ping(self) -> None:
        with self.read() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
