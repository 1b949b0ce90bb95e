"""PostgreSQL row-level security, as the application role: the full matrix, and proof that
the matrix notices a broken policy.

Matrix: every tenant-scoped table (every table with a `tenant_id` column, found in the
catalog, so a table a later migration adds is covered without editing this test) by
select / insert / update / delete by the caller's scope: its own tenant's row, another
tenant's row, no tenant set. Each cell runs in a transaction that is rolled back.

Proof: the same matrix over a scratch copy of those tables (same columns, constraints, RLS
flags and policies, in a schema of its own) holds, then fails for each table whose policy
is dropped, whose row-level security is disabled, or whose policy is made permissive. The
real schema is never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from magnetar.db.engine import make_engine
from magnetar.settings import Settings
from tenants.store import tenant_tables

pytestmark = pytest.mark.integration

OPERATIONS = ("select", "insert", "update", "delete")
# What the application role may do: its own rows, fully; anything else, nothing.
EXPECTED = {
    "own": {"select": "1 row", "insert": "done", "update": "1 row", "delete": "1 row"},
    "other": {"select": "0 rows", "insert": "denied", "update": "0 rows", "delete": "0 rows"},
    "none": {"select": "0 rows", "insert": "denied", "update": "0 rows", "delete": "0 rows"},
    # Moving one's own row to another tenant is refused (WITH CHECK).
    "own → other": {"update": "denied"},
}


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[tuple[str, str, bool], ...]  # (name, udt, required)
    key: tuple[str, ...]

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))


def describe(conn: psycopg.Connection[Any], schema: str, name: str) -> Table:
    columns = conn.execute(
        "SELECT column_name, udt_name, is_nullable = 'NO' AND column_default IS NULL "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema, name),
    ).fetchall()
    key = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
        (f'"{schema}"."{name}"',),
    ).fetchall()
    return Table(schema, name, tuple(columns), tuple(k for (k,) in key))


def sample_value(udt: str, serial: int, position: int) -> Any:
    """A valid value of a column type; distinct per row where it could be part of a key."""
    if udt in ("varchar", "text", "bpchar"):
        return f"r{serial}c{position}"
    if udt == "int2":  # (ledger_counts.shard) wraps before smallint's end
        return (serial * 100 + position) % 32_000
    if udt in ("int4", "int8"):
        return serial * 100 + position
    if udt in ("float4", "float8", "numeric"):
        return 1.0
    if udt == "bool":
        return False
    if udt in ("json", "jsonb"):
        return Jsonb([])
    if udt in ("timestamp", "timestamptz"):
        return datetime.now(UTC).replace(tzinfo=None)
    if udt == "date":
        return date.today()
    if udt == "bytea":
        return bytes(32)  # api_keys checks for a SHA-256
    if udt.startswith("_"):
        return ["ingest"]  # api_keys checks for at least one scope
    raise AssertionError(f"no sample value for column type {udt}: teach sample_value")


class Rows:
    def __init__(self) -> None:
        self._serial = 0

    def row(self, table: Table, tenant: str) -> dict[str, Any]:
        self._serial += 1
        row = {}
        for position, (column, udt, required) in enumerate(table.columns):
            if column == "tenant_id":
                row[column] = tenant
            elif required or column in table.key:
                row[column] = sample_value(udt, self._serial, position)
        return row


def insert(conn: psycopg.Connection[Any], table: Table, row: dict[str, Any]) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            table.ident,
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        ),
        list(row.values()),
    )


def where_key(table: Table, row: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
    clause = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(column)) for column in table.key
    )
    return clause, [row[column] for column in table.key]


def run_cell(
    conn: psycopg.Connection[Any],
    table: Table,
    scope: str | None,
    operation: str,
    target: dict[str, Any],
    new_row: dict[str, Any],
    set_tenant: str | None = None,
) -> str:
    with conn.transaction(force_rollback=True):
        if scope is not None:
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (scope,))
        clause, values = where_key(table, target)
        try:
            with conn.transaction():
                if operation == "select":
                    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table.ident, clause)
                    count = conn.execute(query, values).fetchone()
                    affected = int(count[0]) if count else 0
                elif operation == "insert":
                    if tuple(table.key) == ("tenant_id",):
                        # One row per tenant (e.g. producer_tokens): make room for the new
                        # one, as far as the scope lets this role see (rolled back below).
                        conn.execute(
                            sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(table.ident),
                            [new_row["tenant_id"]],
                        )
                    insert(conn, table, new_row)
                    return "done"
                else:
                    if operation == "update":
                        statement = sql.SQL("UPDATE {} SET tenant_id = {} WHERE {}").format(
                            table.ident,
                            sql.Literal(set_tenant) if set_tenant else sql.SQL("tenant_id"),
                            clause,
                        )
                    else:
                        statement = sql.SQL("DELETE FROM {} WHERE {}").format(table.ident, clause)
                    affected = conn.execute(statement, values).rowcount
        except psycopg.errors.InsufficientPrivilege:
            return "denied"
        except psycopg.errors.UniqueViolation:
            # A row the scope should not have let through met the other tenant's row.
            return "conflict"
    return "1 row" if affected == 1 else f"{affected} rows"


@dataclass
class Fixture:
    app: psycopg.Connection[Any]
    tables: list[Table]
    a: str
    b: str
    seeds: dict[tuple[str, str], dict[str, Any]]
    rows: Rows
    # The owner's connection, for the scratch copy's DDL.
    owner: psycopg.Connection[Any] | None = None


def seed(conn: psycopg.Connection[Any], tables: list[Table], tenants: tuple[str, str]) -> Fixture:
    rows = Rows()
    seeds = {}
    for tenant in tenants:
        with conn.transaction():
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
            for table in tables:
                seeds[(table.name, tenant)] = rows.row(table, tenant)
                insert(conn, table, seeds[(table.name, tenant)])
    return Fixture(conn, tables, tenants[0], tenants[1], seeds, rows)


def matrix(fixture: Fixture, table: Table) -> dict[str, dict[str, str]]:
    """What the application role can do to `table`, cell by cell."""
    app, a, b = fixture.app, fixture.a, fixture.b
    own, other = fixture.seeds[(table.name, a)], fixture.seeds[(table.name, b)]
    observed: dict[str, dict[str, str]] = {}
    for label, scope, target, tenant in (
        ("own", a, own, a),
        ("other", a, other, b),
        ("none", None, own, a),
    ):
        observed[label] = {
            operation: run_cell(
                app, table, scope, operation, target, fixture.rows.row(table, tenant)
            )
            for operation in OPERATIONS
        }
    observed["own → other"] = {"update": run_cell(app, table, a, "update", own, {}, set_tenant=b)}
    return observed


def app_connection(settings: Settings) -> psycopg.Connection[Any]:
    return psycopg.connect(settings.database_url, autocommit=True)


@pytest.fixture
def public_tables(settings: Settings) -> Iterator[Fixture]:
    engine = make_engine(settings.database_url, pool_size=1)
    with engine.connect() as connection:
        names = tenant_tables(connection)
    engine.dispose()
    suffix = uuid.uuid4().hex[:8]
    tenants = (f"rls-a-{suffix}", f"rls-b-{suffix}")
    with app_connection(settings) as app:
        for tenant in tenants:  # api_keys refers to tenants
            app.execute(
                "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, 'RLS test')", (tenant,)
            )
        try:
            tables = [describe(app, "public", name) for name in names]
            yield seed(app, tables, tenants)
        finally:
            for tenant in tenants:
                with app.transaction():
                    app.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
                    for name in names:
                        app.execute(
                            sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(
                                sql.Identifier(name)
                            ),
                            (tenant,),
                        )
                app.execute("DELETE FROM tenants WHERE tenant_id = %s", (tenant,))


def test_the_application_role_is_bound_by_row_level_security(
    public_tables: Fixture,
) -> None:
    app = public_tables.app
    role = app.execute(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert role is not None and role[1:] == (False, False)
    for table in public_tables.tables:
        flags = app.execute(
            "SELECT relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner) <> %s "
            "FROM pg_class WHERE oid = %s::regclass",
            (role[0], f"public.{table.name}"),
        ).fetchone()
        assert flags == (True, True, True), f"{table.name}: RLS on, forced, not owned by app"


def test_the_rls_matrix_holds_on_every_tenant_scoped_table(public_tables: Fixture) -> None:
    names = {t.name for t in public_tables.tables}
    assert {"api_keys", "processed_events", "user_activity", "catalog_items"} <= names
    observed = {t.name: matrix(public_tables, t) for t in public_tables.tables}
    assert observed == dict.fromkeys(observed, EXPECTED)
    # Seen from A, B's rows do not exist at all, in any table.
    app = public_tables.app
    with app.transaction():
        app.execute("SELECT set_config('magnetar.tenant', %s, true)", (public_tables.a,))
        for table in public_tables.tables:
            count = app.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE tenant_id <> %s").format(table.ident),
                (public_tables.a,),
            ).fetchone()
            assert count == (0,), table.name


# -- the matrix can fail -------------------------------------------------------------------


@pytest.fixture
def scratch_copy(settings: Settings, public_tables: Fixture) -> Iterator[Fixture]:
    """The tenant-scoped tables copied into a schema of their own, with their RLS flags
    and policies, seeded like the real ones; dropped afterwards."""
    schema = f"rls_scratch_{uuid.uuid4().hex[:8]}"
    app_role = public_tables.app.execute("SELECT current_user").fetchone()
    assert app_role is not None
    with psycopg.connect(settings.database_owner_url, autocommit=True) as owner:
        owner.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            for table in public_tables.tables:
                copy_table(owner, schema, table.name)
            owner.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; "
                        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {0} TO {1}")
                .format(sql.Identifier(schema), sql.Identifier(app_role[0]))
            )  # fmt: skip
            app = public_tables.app
            tables = [describe(app, schema, t.name) for t in public_tables.tables]
            copy = seed(app, tables, (public_tables.a, public_tables.b))
            copy.owner = owner
            yield copy
        finally:
            owner.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def copy_table(owner: psycopg.Connection[Any], schema: str, name: str) -> None:
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
    owner.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
            target, sql.SQL("public.{}").format(sql.Identifier(name))
        )
    )
    copy_row_security(owner, schema, name)


def copy_row_security(owner: psycopg.Connection[Any], schema: str, name: str) -> None:
    """The public table's RLS flags and policies, onto its copy in `schema`."""
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
    flags = owner.execute(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
        (f"public.{name}",),
    ).fetchone()
    assert flags is not None
    if flags[0]:
        owner.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))
    if flags[1]:
        owner.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(target))
    for policy, permissive, cmd, qual, check in owner.execute(
        "SELECT policyname, permissive, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname = 'public' AND tablename = %s",
        (name,),
    ).fetchall():
        statement = sql.SQL("CREATE POLICY {} ON {} AS {} FOR {}").format(
            sql.Identifier(policy), target, sql.SQL(permissive), sql.SQL(cmd)
        )
        if qual:
            statement += sql.SQL(" USING ({})").format(sql.SQL(qual))
        if check:
            statement += sql.SQL(" WITH CHECK ({})").format(sql.SQL(check))
        owner.execute(statement)


SABOTAGE = {
    "policy dropped": "DROP POLICY {policy} ON {table}",
    "row-level security disabled": "ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    "policy made permissive": (
        "DROP POLICY {policy} ON {table}; "
        "CREATE POLICY {policy} ON {table} USING (true) WITH CHECK (true)"
    ),
}


def test_the_matrix_fails_for_each_table_whose_policy_is_broken_on_a_scratch_copy(
    scratch_copy: Fixture,
) -> None:
    owner = scratch_copy.owner
    assert owner is not None
    # A faithful copy passes, as the real tables do.
    assert {t.name: matrix(scratch_copy, t) for t in scratch_copy.tables} == {
        t.name: EXPECTED for t in scratch_copy.tables
    }
    caught = {}
    for table in scratch_copy.tables:
        [(policy,)] = owner.execute(
            "SELECT policyname FROM pg_policies WHERE schemaname = %s AND tablename = %s",
            (table.schema, table.name),
        ).fetchall()
        for kind, template in SABOTAGE.items():
            # Committed: the matrix runs in the application role's own session.
            statement = template.format(
                policy=sql.Identifier(policy).as_string(owner), table=table.ident.as_string(owner)
            )
            owner.execute(statement)
            try:
                caught[(table.name, kind)] = matrix(scratch_copy, table) != EXPECTED
            finally:
                owner.execute(
                    sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(
                        sql.Identifier(policy), table.ident
                    )
                )
                copy_row_security(owner, table.schema, table.name)
        assert matrix(scratch_copy, table) == EXPECTED  # restored
    assert caught == dict.fromkeys(caught, True)
    assert len(caught) == len(scratch_copy.tables) * len(SABOTAGE)
