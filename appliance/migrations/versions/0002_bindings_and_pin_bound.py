"""bindings of public keys and wrapped vault keys; wrong PINs since the last success

Revision ID: 0002
Revises: 0001

The new MAC columns are filled by `coffre init` right after this migration (it
needs the token): rows present at upgrade time are bound as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("pin_failures_since_success", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("public_key_mac", sa.String(length=128), nullable=True))
    with op.batch_alter_table("vault_members") as batch:
        batch.add_column(sa.Column("wrapped_key_mac", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vault_members") as batch:
        batch.drop_column("wrapped_key_mac")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("public_key_mac")
        batch.drop_column("pin_failures_since_success")
