"""mail outbox; sends (a copy of a secret for a user, under a one-time code, or by link)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("body_blob", sa.LargeBinary(), nullable=True),
        sa.Column("kek_label", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "sends",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("sender_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_id", sa.String(length=32), nullable=True),
        sa.Column("recipient_email", sa.String(length=320), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("kek_label", sa.String(length=64), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped_key_mac", sa.String(length=128), nullable=True),
        sa.Column("code_salt", sa.LargeBinary(), nullable=True),
        sa.Column("code_pepper", sa.String(length=64), nullable=True),
        sa.Column("code_kdf", sa.String(length=128), nullable=True),
        sa.Column("max_views", sa.Integer(), nullable=False),
        sa.Column("views_used", sa.Integer(), nullable=False),
        sa.Column("failed_codes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("viewed_at", sa.Float(), nullable=True),
        sa.Column("viewed_from", sa.String(length=64), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("mac", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["sender_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recipient_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_sends_state_expires", "sends", ["state", "expires_at"])
    op.create_index("ix_sends_sender_id", "sends", ["sender_id"])
    op.create_index("ix_sends_recipient_id", "sends", ["recipient_id"])


def downgrade() -> None:
    op.drop_table("sends")
    op.drop_table("mail_outbox")
