"""row MACs anchored in the token, ticket/token MACs, audit head MAC, deployment id,
user key pair generations

Revision ID: 0003
Revises: 0002

The MAC columns start NULL. `coffre init` fills them once, for rows present at
upgrade time, and records in the token that it did (appliance/integrity/adoption.py):
after that, a NULL or wrong MAC is an integrity failure, and no later init binds
anything again.
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ANCHORED = ("users", "sessions", "vaults", "vault_members")


def upgrade() -> None:
    for table in _ANCHORED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("row_mac", sa.String(length=128), nullable=True))
            batch.add_column(sa.Column("anchor_bucket", sa.Integer(), nullable=True))
            batch.create_index(f"ix_{table}_anchor_bucket", ["anchor_bucket"], unique=False)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("key_generation", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("key_created_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("key_rotation_due", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("seen_mac", sa.String(length=128), nullable=True))
    for table in ("login_tickets", "one_time_tokens"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("mac", sa.String(length=128), nullable=True))
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("head_mac", sa.String(length=128), nullable=True))
    op.execute("UPDATE users SET key_generation = 1 WHERE public_key IS NOT NULL")
    deployment = op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(deployment, [{"id": 1, "deployment_id": secrets.token_hex(16), "created_at": time.time()}])
    locks = op.create_table(
        "anchor_locks",
        sa.Column("domain", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("domain"),
    )
    op.bulk_insert(locks, [{"domain": d} for d in ("users", "sessions", "vaults")])


def downgrade() -> None:
    op.drop_table("anchor_locks")
    op.drop_table("deployment")
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("head_mac")
    for table in ("one_time_tokens", "login_tickets"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mac")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("seen_mac")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("key_rotation_due")
        batch.drop_column("key_created_at")
        batch.drop_column("key_generation")
    for table in _ANCHORED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_anchor_bucket")
            batch.drop_column("anchor_bucket")
            batch.drop_column("row_mac")
