"""The MANAGE scope, and a CHECK that a stored key carries only tenant scopes.

Catalog writes and user erasure move from INGEST (the key a client app carries) to a new
MANAGE scope. **No existing key is granted MANAGE**: nothing stored tells a server-side key
from one shipped inside an app, so any grant would keep the hole open for the very keys it
closes. A backend that writes the catalog or erases users gets PERMISSION_DENIED naming
`manage` until it is given a MANAGE key (the reasoning and the upgrade step:
docs/serving.md, "Scopes"). So this revision updates no row of `api_keys`.

Every row of `api_keys` is a tenant's key (the platform's key lives in the settings, not
here), so the CHECK allows only tenant scopes: ADMIN on a stored key is refused by the
database, whatever writes the row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A snapshot, not an import: a migration must not change when the code does.
TENANT_SCOPES = ("ingest", "read", "manage")
CHECK = "scopes <@ ARRAY[" + ", ".join(f"'{s}'" for s in TENANT_SCOPES) + "]::varchar(16)[]"


def _keys_where(condition: str) -> list[str]:
    """`tenant/key_id` of the keys matching an SQL condition."""
    found = op.get_bind().exec_driver_sql(
        f"SELECT tenant_id || '/' || key_id FROM api_keys WHERE {condition}"
    )
    return [str(row[0]) for row in found]


def upgrade() -> None:
    # Grants nothing (see above). A key holding a scope outside the tenant scopes (only
    # possible by writing the table by hand) would make the CHECK fail: say which keys.
    bad = _keys_where(f"NOT ({CHECK})")
    if bad:
        raise RuntimeError(
            "api_keys rows with scopes a tenant key cannot hold (revoke and delete them, "
            f"then migrate again): {', '.join(bad[:20])}"
        )
    op.create_check_constraint(op.f("ck_api_keys_tenant_scopes"), "api_keys", CHECK)


def downgrade() -> None:
    # The older code cannot read a key with MANAGE (its scope enum lacks it): refuse rather
    # than silently dropping a scope or a key someone relies on.
    holders = _keys_where("'manage' = ANY(scopes)")
    if holders:
        raise RuntimeError(
            "keys with the manage scope exist; delete them before downgrading: "
            + ", ".join(holders[:20])
        )
    op.drop_constraint(op.f("ck_api_keys_tenant_scopes"), "api_keys", type_="check")
