"""Count each tenant's counted events apart from the ledger, so the ledger can expire.

`ledger_counts` holds a few rows per tenant (shards, see magnetar.db.ledger) that the
materializer advances in the same transaction as its ledger inserts. The exporter then reads
a handful of rows instead of counting the ledger, and expiring old ledger rows does not
lower the count. Existing ledgers are counted once here, tenant by tenant (the table's
row-level security binds the owner too).

Revision ID: 0009
Revises: 0007 (re-point at 0008 when both are merged)
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_counts",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("counted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "shard", name="pk_ledger_counts"),
    )
    op.execute("ALTER TABLE ledger_counts ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE ledger_counts FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY ledger_counts_tenant_isolation ON ledger_counts "
        "USING (tenant_id = current_setting('magnetar.tenant', true)) "
        "WITH CHECK (tenant_id = current_setting('magnetar.tenant', true))"
    )
    # Backfill: processed_events is row-level secured too, so each tenant in its own scope.
    op.execute(
        """
        DO $$
        DECLARE t text;
        BEGIN
          FOR t IN SELECT tenant_id FROM tenants LOOP
            PERFORM set_config('magnetar.tenant', t, true);
            INSERT INTO ledger_counts (tenant_id, shard, counted)
            SELECT t, 0, count(*) FROM processed_events WHERE tenant_id = t
            HAVING count(*) > 0;
          END LOOP;
          PERFORM set_config('magnetar.tenant', '', true);
        END $$
        """
    )


def downgrade() -> None:
    op.drop_table("ledger_counts")
