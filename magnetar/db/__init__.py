"""PostgreSQL access: engines, sessions scoped to one tenant, migrations."""
