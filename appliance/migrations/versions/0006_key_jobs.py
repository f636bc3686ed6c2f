"""key operation jobs (rotations as resumable jobs) and their failed rows

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        # The kind while the job is unfinished, NULL once done/failed: the unique
        # constraint lets one unfinished job per kind exist, across every node.
        sa.Column("active_kind", sa.String(length=48), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("previous", sa.String(length=256), nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("milestone", sa.Integer(), nullable=False),
        sa.Column("switched_at", sa.Float(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("lease_holder", sa.String(length=64), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_kind", name="uq_key_jobs_active_kind"),
    )
    op.create_table(
        "key_job_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("row_id", sa.String(length=128), nullable=False),
        sa.Column("error", sa.String(length=256), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["key_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_key_job_failures_job_id", "key_job_failures", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_key_job_failures_job_id", table_name="key_job_failures")
    op.drop_table("key_job_failures")
    op.drop_table("key_jobs")
