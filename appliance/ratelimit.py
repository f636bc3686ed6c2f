"""Sliding-window limits kept in the database, so every node sees the same counts."""

from __future__ import annotations

import math
from collections.abc import Callable

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from appliance.errors import RateLimited
from appliance.models import RateLimitHit


class RateLimiter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def check(self, db: Session, key: str, limit: int, window: int, message: str) -> None:
        """Raise RateLimited when ``key`` has ``limit`` hits in the window.

        On PostgreSQL a transaction-scoped advisory lock per key makes check-then-hit
        atomic across nodes (SQLite write transactions are serialized already).
        """
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
        now = self.clock()
        since = now - window
        count, oldest = db.execute(
            select(func.count(), func.min(RateLimitHit.ts)).where(RateLimitHit.key == key, RateLimitHit.ts > since)
        ).one()
        if count >= limit:
            retry = math.ceil((oldest or now) + window - now)
            raise RateLimited(message, retry_after=retry)

    def hit(self, db: Session, key: str, window: int) -> None:
        now = self.clock()
        db.add(RateLimitHit(key=key, ts=now))
        db.execute(delete(RateLimitHit).where(RateLimitHit.key == key, RateLimitHit.ts <= now - window))

    def clear(self, db: Session, key: str) -> None:
        db.execute(delete(RateLimitHit).where(RateLimitHit.key == key))
