"""Alembic environment: one transaction per migration, short lock and statement timeouts."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

import magnetar.db.catalog_models  # (registers the catalog and erasure tables)
import magnetar.db.state_models  # noqa: F401  (registers the state tables)
from magnetar.db.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set (see magnetar.db.migrate)"
    engine = create_engine(url)
    with engine.connect() as connection:
        # A migration that waits on a lock would stall live traffic behind it: fail fast.
        connection.execute(text("SET lock_timeout = '5s'"))
        connection.execute(text("SET statement_timeout = '120s'"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            transaction_per_migration=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
