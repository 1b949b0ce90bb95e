"""Migration 0008 on the real PostgreSQL: stored keys hold tenant scopes only, and the
existing keys' scopes are left as they were (no key is granted MANAGE).

The migration runs inside one transaction that is rolled back, so the shared database is
never changed; when the database is already at 0008 or later, the constraint is there and
only the checks run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, create_engine, text

import migrations
from magnetar.db.engine import sqlalchemy_url
from magnetar.settings import Settings
from tests.integration.conftest import unique_name

pytestmark = pytest.mark.integration

CONSTRAINT = "ck_api_keys_tenant_scopes"


def _revision_0008() -> ModuleType:
    path = Path(migrations.__file__).parent / "versions" / "0008_manage_scope.py"
    spec = importlib.util.spec_from_file_location("revision_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_constraint(connection: Connection) -> bool:
    found = connection.execute(
        text("SELECT count(*) FROM pg_constraint WHERE conname = :c"), {"c": CONSTRAINT}
    )
    return found.scalar_one() == 1


def _insert_key(connection: Connection, tenant: str, key_id: str, scopes: list[str]) -> None:
    connection.execute(
        text(
            "INSERT INTO api_keys (tenant_id, key_id, secret_sha256, scopes) "
            "VALUES (:t, :k, decode(repeat('00', 32), 'hex'), CAST(:s AS varchar(16)[]))"
        ),
        {"t": tenant, "k": key_id, "s": scopes},
    )


@pytest.fixture
def migrated(settings: Settings) -> Iterator[tuple[Connection, str]]:
    """The owner's connection in a transaction (rolled back) with 0008 applied, a tenant
    and its pre-existing INGEST+READ key (key id `aaaaaaaaaaaaaaaa`)."""
    engine = create_engine(sqlalchemy_url(settings.database_owner_url))
    tenant = unique_name("scopes")
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(text("SET LOCAL lock_timeout = '5s'"))
                connection.execute(
                    text("SELECT set_config('magnetar.tenant', :t, true)"), {"t": tenant}
                )
                connection.execute(
                    text("INSERT INTO tenants (tenant_id, display_name) VALUES (:t, 'scopes')"),
                    {"t": tenant},
                )
                already = _has_constraint(connection)
                if not already:
                    _insert_key(connection, tenant, "aaaaaaaaaaaaaaaa", ["ingest", "read"])
                    with Operations.context(MigrationContext.configure(connection)):
                        _revision_0008().upgrade()
                else:  # the database is past 0008: the key is inserted under the CHECK
                    _insert_key(connection, tenant, "aaaaaaaaaaaaaaaa", ["ingest", "read"])
                yield connection, tenant
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def test_a_stored_key_with_the_admin_scope_is_refused_by_the_database(
    migrated: tuple[Connection, str],
) -> None:
    connection, tenant = migrated
    for scopes in (["admin"], ["ingest", "admin"], ["owner"]):
        savepoint = connection.begin_nested()
        with pytest.raises(Exception) as raised:
            _insert_key(connection, tenant, "bbbbbbbbbbbbbbbb", scopes)
        savepoint.rollback()
        cause = raised.value.__cause__ or raised.value
        assert isinstance(cause, psycopg.errors.CheckViolation), raised.value
        assert CONSTRAINT in str(raised.value)
    for scopes in (["manage"], ["ingest", "read", "manage"]):
        savepoint = connection.begin_nested()
        _insert_key(connection, tenant, "cccccccccccccccc", scopes)
        savepoint.rollback()


def test_existing_keys_keep_their_scopes_and_none_is_granted_manage(
    migrated: tuple[Connection, str],
) -> None:
    connection, tenant = migrated
    scopes: list[str] = connection.execute(
        text("SELECT scopes FROM api_keys WHERE tenant_id = :t AND key_id = 'aaaaaaaaaaaaaaaa'"),
        {"t": tenant},
    ).scalar_one()
    assert sorted(scopes) == ["ingest", "read"]
