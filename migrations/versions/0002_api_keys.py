"""API keys: hashed, tenant-scoped, row-level security forced.

A key's secret is ``mgk.<tenant_id>.<key_id>.<random>``; only its SHA-256 is stored. The
tenant travels inside the key so the gateway can set ``magnetar.tenant`` before it looks the
key up: the lookup itself is subject to row-level security like every other tenant query.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("description", sa.String(200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_api_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key_id", name=op.f("pk_api_keys")),
        sa.CheckConstraint("octet_length(secret_sha256) = 32", name=op.f("ck_api_keys_sha256")),
        sa.CheckConstraint("cardinality(scopes) > 0", name=op.f("ck_api_keys_has_scope")),
    )
    # FORCE makes the policy bind the table owner too; the application role is never the
    # owner and has no BYPASSRLS, so without `magnetar.tenant` set it sees no key at all.
    op.execute("ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE api_keys FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY api_keys_tenant_isolation ON api_keys "
        "USING (tenant_id = current_setting('magnetar.tenant', true)) "
        "WITH CHECK (tenant_id = current_setting('magnetar.tenant', true))"
    )


def downgrade() -> None:
    op.drop_table("api_keys")
