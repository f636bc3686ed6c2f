"""Liveness and readiness: 200 only when the database and the token answer."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency

from appliance.core import Appliance
from web import schemas


@get("/healthz", operation_id="health", sync_to_thread=True, tags=["health"])
def healthz(appliance: NamedDependency[Appliance]) -> schemas.HealthOut:
    appliance.health()
    return schemas.HealthOut(status="ok")
