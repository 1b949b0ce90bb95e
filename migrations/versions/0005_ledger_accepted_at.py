"""Record when the gateway accepted each counted event, for freshness from state itself.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows written before this revision have no acceptance time.
    op.add_column("processed_events", sa.Column("accepted_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("processed_events", "accepted_at")
