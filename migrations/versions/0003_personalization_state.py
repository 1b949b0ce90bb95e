"""Personalization state and the processed-event ledger, tenant-isolated.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
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


def _scored(table: str, *keys: tuple[str, sa.types.TypeEngine[str]]) -> None:
    op.create_table(
        table,
        sa.Column("tenant_id", TENANT, nullable=False),
        *(sa.Column(name, type_, nullable=False) for name, type_ in keys),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", *(name for name, _ in keys), name=f"pk_{table}"),
    )
    _isolate(table)


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("committed_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_processed_events"),
    )
    _isolate("processed_events")

    op.create_table(
        "user_item_signals",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "item_id", name="pk_user_item_signals"),
    )
    _isolate("user_item_signals")

    _scored("user_category_affinities", ("user_id", ID), ("category", ID))

    op.create_table(
        "user_activity",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("recent_items", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name="pk_user_activity"),
    )
    _isolate("user_activity")

    op.create_table(
        "item_categories",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("categories", postgresql.ARRAY(ID), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "item_id", name="pk_item_categories"),
    )
    _isolate("item_categories")

    _scored("item_popularity", ("window", sa.String(16)), ("item_id", ID))
    _scored("item_covisitation", ("item_id", ID), ("other_item_id", ID))


def downgrade() -> None:
    for table in (
        "item_covisitation",
        "item_popularity",
        "item_categories",
        "user_activity",
        "user_category_affinities",
        "user_item_signals",
        "processed_events",
    ):
        op.drop_table(table)
