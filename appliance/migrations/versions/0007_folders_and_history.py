"""folders (tree, per-member access, folder keys), item history, TOTP field

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _anchored() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("row_mac", sa.String(length=128), nullable=True),
        sa.Column("anchor_bucket", sa.Integer(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "folders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("keyed", sa.Boolean(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("settings_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        *_anchored(),
        sa.ForeignKeyConstraint(["vault_id"], ["vaults.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_id"], ["folders.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_folders_vault_id"), ["vault_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_folders_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_folders_anchor_bucket"), ["anchor_bucket"], unique=False)
    for table, extra in (
        (
            "folder_access",
            [
                sa.Column("access", sa.String(length=8), nullable=False),
                sa.Column("set_at", sa.Float(), nullable=False),
                sa.Column("set_by", sa.String(length=32), nullable=False),
            ],
        ),
        (
            "folder_keys",
            [
                sa.Column("key_version", sa.Integer(), nullable=False),
                sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
                sa.Column("wrapped_key_mac", sa.String(length=128), nullable=False),
            ],
        ),
    ):
        op.create_table(
            table,
            sa.Column("folder_id", sa.String(length=32), nullable=False),
            sa.Column("user_id", sa.String(length=32), nullable=False),
            sa.Column("vault_id", sa.String(length=32), nullable=False),
            *extra,
            *_anchored(),
            sa.ForeignKeyConstraint(["folder_id"], ["folders.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["vault_id"], ["vaults.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("folder_id", "user_id"),
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_user_id"), ["user_id"], unique=False)
            batch_op.create_index(batch_op.f(f"ix_{table}_vault_id"), ["vault_id"], unique=False)
            batch_op.create_index(batch_op.f(f"ix_{table}_anchor_bucket"), ["anchor_bucket"], unique=False)
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("folder_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("key_folder_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("totp_ct", sa.LargeBinary(), nullable=True))
        batch_op.create_index(batch_op.f("ix_items_folder_id"), ["folder_id"], unique=False)
        batch_op.create_foreign_key("fk_items_folder_id", "folders", ["folder_id"], ["id"])
    op.create_table(
        "item_versions",
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("folder_id", sa.String(length=32), nullable=True),
        sa.Column("key_folder_id", sa.String(length=32), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("title_ct", sa.LargeBinary(), nullable=False),
        sa.Column("username_ct", sa.LargeBinary(), nullable=True),
        sa.Column("password_ct", sa.LargeBinary(), nullable=True),
        sa.Column("url_ct", sa.LargeBinary(), nullable=True),
        sa.Column("notes_ct", sa.LargeBinary(), nullable=True),
        sa.Column("totp_ct", sa.LargeBinary(), nullable=True),
        sa.Column("changed_by", sa.String(length=32), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", "version"),
    )
    with op.batch_alter_table("item_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_versions_vault_id"), ["vault_id"], unique=False)


def downgrade() -> None:
    op.drop_table("item_versions")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_constraint("fk_items_folder_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_items_folder_id"))
        batch_op.drop_column("totp_ct")
        batch_op.drop_column("key_folder_id")
        batch_op.drop_column("folder_id")
    op.drop_table("folder_keys")
    op.drop_table("folder_access")
    op.drop_table("folders")
