"""Alembic environment: run with a connection handed over by ``appliance.schema``."""

from __future__ import annotations

from alembic import context

from appliance.models import Base

config = context.config
target_metadata = Base.metadata

connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `coffre init` (appliance.schema.upgrade)")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
