"""The database role the gateway and the functions connect as must be one row-level security
holds for: not a superuser, not BYPASSRLS, not (a member of) the owner of the tables or the
database. Any of those reads and writes every tenant's rows, so a process configured with
such a role refuses to use it, with one line naming the fix.

`role_problem` decides from `RoleFacts` (pure); `read_role_facts` asks PostgreSQL about the
connection's own role; `require_app_role` does both for a URL at process start, and
`refuse_unsafe_role` for every new connection of a pool (its ``configure`` callback), so a
gateway that started while PostgreSQL was down checks the role once it can.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from magnetar.problems import EnvironmentProblem

log = logging.getLogger(__name__)

# "Owner" includes membership with inherited privileges (pg_has_role ... USAGE): PostgreSQL
# lets such a member bypass row-level security like the owner itself.
_FACTS = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls,
  pg_has_role(current_user, d.datdba, 'USAGE'),
  ARRAY(
    SELECT c.relname::text FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
      AND pg_has_role(current_user, c.relowner, 'USAGE')
    ORDER BY c.relname
  )
FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""


@dataclass(frozen=True)
class RoleFacts:
    role: str
    superuser: bool
    bypass_rls: bool
    owns_database: bool
    owned_tables: tuple[str, ...]


def role_problem(facts: RoleFacts) -> EnvironmentProblem | None:
    """Why row-level security would not hold for `facts.role`, with the fix; None if it does."""
    reasons = []
    if facts.superuser:
        reasons.append("a superuser")
    if facts.bypass_rls:
        reasons.append("BYPASSRLS")
    if facts.owns_database:
        reasons.append("the owner of the database")
    if facts.owned_tables:
        shown = ", ".join(facts.owned_tables[:3])
        more = f" and {len(facts.owned_tables) - 3} more" if len(facts.owned_tables) > 3 else ""
        reasons.append(f"the owner of tables {shown}{more}")
    if not reasons:
        return None
    return EnvironmentProblem(
        f"database role {facts.role!r} is {', '.join(reasons)}: row-level security would "
        "not keep tenants apart for it",
        "set MAGNETAR_DATABASE_URL to the application role (magnetar_app: NOSUPERUSER "
        "NOBYPASSRLS, not the owner; docs/kubernetes.md); the owner role belongs only in "
        "MAGNETAR_DATABASE_OWNER_URL",
    )


def read_role_facts(conn: psycopg.Connection[Any]) -> RoleFacts:
    row = conn.execute(_FACTS).fetchone()
    assert row is not None  # current_user and current_database() always exist
    name, superuser, bypass, owns_database, tables = row
    return RoleFacts(str(name), bool(superuser), bool(bypass), bool(owns_database), tuple(tables))


def refuse_unsafe_role(conn: psycopg.Connection[Any]) -> None:
    """Raise `EnvironmentProblem` if `conn`'s role is one row-level security does not bind.
    Leaves an autocommit connection as it was (no transaction left open)."""
    problem = role_problem(read_role_facts(conn))
    if not conn.autocommit:
        conn.rollback()
    if problem is not None:
        log.error("%s", problem)
        raise problem


def require_app_role(database_url: str, *, connect_timeout_s: int = 5) -> bool:
    """At process start: refuse an unsafe role. True when checked; False (logged) when
    PostgreSQL cannot be reached now — the process starts, and its pools check later."""
    try:
        conn = psycopg.connect(database_url, autocommit=True, connect_timeout=connect_timeout_s)
    except psycopg.OperationalError as error:
        log.warning("database role not checked at start (PostgreSQL unreachable: %s)", error)
        return False
    with conn:
        refuse_unsafe_role(conn)
    return True
