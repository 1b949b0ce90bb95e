"""The tenant's catalog and user-erasure tombstones, tenant-isolated.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TENANT = sa.String(64)
ID = sa.String(128)


def _isolate(table: str) -> None:
    """Row-level security forced (binds the owner too), scoped by the per-transaction tenant."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_tenant_isolation ON {table} "
        "USING (tenant_id = current_setting('magnetar.tenant', true)) "
        "WITH CHECK (tenant_id = current_setting('magnetar.tenant', true))"
    )


def upgrade() -> None:
    op.create_table(
        "catalog_items",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("categories", postgresql.ARRAY(ID), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("attributes", postgresql.JSONB(), nullable=False),
        sa.Column("update_time", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "item_id", name="pk_catalog_items"),
    )
    _isolate("catalog_items")

    op.create_table(
        "erased_users",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("erased_before", sa.BigInteger(), nullable=False),
        sa.Column("erased_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name="pk_erased_users"),
    )
    _isolate("erased_users")


def downgrade() -> None:
    op.drop_table("erased_users")
    op.drop_table("catalog_items")
