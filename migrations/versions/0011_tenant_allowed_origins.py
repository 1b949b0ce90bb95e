"""Each tenant's allowed web origins: the pages that may call the HTTP door from a browser.

An empty array (the default, so existing rows and older writers stay valid) lets no
cross-origin page in; the gateway's HTTP door reads the column per tenant (cached) to
answer CORS (docs/clients.md, "CORS"). `tenants` stays platform data outside row-level
security, like before.

Revision ID: 0011
Revises: 0010 (main's 0010_producer_tokens, merged while this branch was open)
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column(
            "allowed_origins",
            postgresql.ARRAY(sa.String(255)),
            server_default=sa.text("'{}'::varchar(255)[]"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("tenants", "allowed_origins")
