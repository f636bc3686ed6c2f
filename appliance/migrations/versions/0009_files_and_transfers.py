"""files in vaults: versions with wrapped data keys, chunks (database store), uploads in progress

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("folder_id", sa.String(length=32), nullable=True),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["vault_id"], ["vaults.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_files_vault_id", "files", ["vault_id"])
    op.create_table(
        "file_versions",
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("meta_ct", sa.LargeBinary(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("file_id", "version"),
        sa.UniqueConstraint("blob_id"),
    )
    op.create_index("ix_file_versions_vault_id", "file_versions", ["vault_id"])
    op.create_index("ix_file_versions_created_by", "file_versions", ["created_by"])
    op.create_table(
        "file_chunks",
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id", "seq"),
    )
    op.create_table(
        "file_uploads",
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id"),
    )
    op.create_index("ix_file_uploads_started", "file_uploads", ["started_at"])


def downgrade() -> None:
    op.drop_table("file_uploads")
    op.drop_table("file_chunks")
    op.drop_index("ix_file_versions_created_by", table_name="file_versions")
    op.drop_index("ix_file_versions_vault_id", table_name="file_versions")
    op.drop_table("file_versions")
    op.drop_index("ix_files_vault_id", table_name="files")
    op.drop_table("files")
