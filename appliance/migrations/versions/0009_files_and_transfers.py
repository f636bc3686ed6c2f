"""files in vaults (versions, wrapped data keys, chunks, uploads in progress); transfers to outsiders; deposit boxes

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"  # re-chained after merging main (0008 sends and mail); the task gave "0005"
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
        sa.Column("key_folder_id", sa.String(length=32), nullable=True),
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
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("max_downloads", sa.Integer(), nullable=False),
        sa.Column("failed_passwords", sa.Integer(), nullable=False),
        sa.Column("active_downloads", sa.Integer(), nullable=False),
        sa.Column("notify_downloads", sa.Boolean(), nullable=False),
        sa.Column("email_codes", sa.Boolean(), nullable=False),
        sa.Column("pw_salt", sa.LargeBinary(), nullable=True),
        sa.Column("pepper_label", sa.String(length=64), nullable=True),
        sa.Column("kdf", sa.String(length=128), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("draft_blob", sa.LargeBinary(), nullable=True),
        sa.Column("kek_label", sa.String(length=64), nullable=True),
        sa.Column("message_ct", sa.LargeBinary(), nullable=True),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("shredded_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_transfers_owner_id", "transfers", ["owner_id"])
    op.create_index("ix_transfers_expires_at", "transfers", ["expires_at"])
    op.create_table(
        "transfer_files",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("meta_ct", sa.LargeBinary(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("blob_id"),
    )
    op.create_index("ix_transfer_files_transfer_id", "transfer_files", ["transfer_id"])
    op.create_table(
        "transfer_recipients",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("downloads", sa.Integer(), nullable=False),
        sa.Column("code_salt", sa.LargeBinary(), nullable=True),
        sa.Column("code_pepper", sa.String(length=64), nullable=True),
        sa.Column("code_kdf", sa.String(length=128), nullable=True),
        sa.Column("code_wrapped", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_transfer_recipients_transfer_id", "transfer_recipients", ["transfer_id"])
    op.create_table(
        "transfer_grants",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("key_blob", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_transfer_grants_transfer_id", "transfer_grants", ["transfer_id"])
    op.create_table(
        "transfer_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("client_addr", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_transfer_events_transfer_id", "transfer_events", ["transfer_id"])
    op.create_table(
        "deposit_boxes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("folder_id", sa.String(length=32), nullable=True),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("closes_at", sa.Float(), nullable=True),
        sa.Column("max_bytes", sa.BigInteger(), nullable=True),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=True),
        sa.Column("password_pepper", sa.String(length=64), nullable=True),
        sa.Column("failed_passwords", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("vault_wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_label", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["vault_id"], ["vaults.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_deposit_boxes_vault_id", "deposit_boxes", ["vault_id"])
    op.create_index("ix_deposit_boxes_owner_id", "deposit_boxes", ["owner_id"])
    op.create_table(
        "deposit_files",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("box_id", sa.String(length=32), nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("meta_ct", sa.LargeBinary(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("client_addr", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["box_id"], ["deposit_boxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("blob_id"),
    )
    op.create_index("ix_deposit_files_box_id", "deposit_files", ["box_id"])
    op.create_index("ix_deposit_files_vault_id", "deposit_files", ["vault_id"])


def downgrade() -> None:
    for table in ("deposit_files", "deposit_boxes", "transfer_events", "transfer_grants", "transfer_recipients", "transfer_files", "transfers"):
        op.drop_table(table)
    op.drop_table("file_uploads")
    op.drop_table("file_chunks")
    op.drop_index("ix_file_versions_created_by", table_name="file_versions")
    op.drop_index("ix_file_versions_vault_id", table_name="file_versions")
    op.drop_table("file_versions")
    op.drop_index("ix_files_vault_id", table_name="files")
    op.drop_table("files")
