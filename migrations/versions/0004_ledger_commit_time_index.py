"""Index the processed-event ledger by commit time, for expiry by age and freshness probes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_processed_events_tenant_committed", "processed_events", ["tenant_id", "committed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_processed_events_tenant_committed", table_name="processed_events")
