"""Producer tokens: each tenant's Pulsar role token, minted by the admin plane, read by the gateway.

The admin plane (`magnetar admin serve`, `magnetar tenants`) holds the broker's token signing
key and signs a token for the tenant's own role (`magnetar-tenant-<id>`, produce and consume
on its namespaces only) when it onboards the tenant; the public gateway reads it here when it
opens the tenant's producer, so it needs neither the signing key nor the superuser token
(docs/kubernetes.md, "Topology"). Row-level security is forced as on every tenant table: a
session scoped to one tenant reads that tenant's token and no other. Existing tenants get
theirs from `magnetar tenants issue-producer-tokens` (or their next UpdateTenant).

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "producer_tokens",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name="fk_producer_tokens_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_producer_tokens"),
    )
    op.execute("ALTER TABLE producer_tokens ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE producer_tokens FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY producer_tokens_tenant_isolation ON producer_tokens "
        "USING (tenant_id = current_setting('magnetar.tenant', true)) "
        "WITH CHECK (tenant_id = current_setting('magnetar.tenant', true))"
    )


def downgrade() -> None:
    op.drop_table("producer_tokens")
