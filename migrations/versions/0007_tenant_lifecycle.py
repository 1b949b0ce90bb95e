"""Tenant lifecycle: the desired state (plan, quotas) and onboarding status on `tenants`.

The reconciler records what was asked (plan, resolved quotas) before it touches Pulsar,
and the state of every onboarding step as it goes, so a crash resumes where it stopped and
GetTenant shows where a tenant is. Rows written before this revision keep working: they
read as active tenants without a plan, whose ingest the gateway does not rate-limit.

`tenants` is platform data (the admin manages it across tenants) and stays outside
row-level security, like before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATES = ("provisioning", "active", "failed", "deleting")


def upgrade() -> None:
    # Server defaults make the new columns cheap to add (no rewrite on PostgreSQL 11+) and
    # keep older writers, which insert only id and display name, valid.
    op.add_column("tenants", sa.Column("plan", sa.String(32), server_default="", nullable=False))
    op.add_column(
        "tenants",
        sa.Column(
            "quotas",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "tenants", sa.Column("state", sa.String(16), server_default="active", nullable=False)
    )
    op.add_column(
        "tenants",
        sa.Column(
            "steps",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "tenants",
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    )
    op.create_check_constraint(
        "ck_tenants_state",
        "tenants",
        "state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")",
    )


def downgrade() -> None:
    op.drop_constraint("ck_tenants_state", "tenants", type_="check")
    for column in ("updated_at", "steps", "state", "quotas", "plan"):
        op.drop_column("tenants", column)
