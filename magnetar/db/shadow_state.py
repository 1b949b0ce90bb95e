"""A tenant's state recomputed beside the live one, then put in its place at once.

`ShadowState` keeps a copy of the tenant-scoped state tables in a schema ``rebuild_<tenant>``,
written by the pipeline's own `commit_batch`. `claim`: one rebuild per tenant at a time, a
dead rebuild's shadow dropped first; `hold`: the tenant's commits wait until `release`;
`switch`, in one transaction: the live state becomes the shadow's, ledger carried over, and
"everything of the tenant changed" is announced. It runs on one connection, the owner's
(docs/pipeline.md, "Rebuilding a tenant's state")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from magnetar.db.change_stream import notify_everything
from magnetar.db.models import Base
from magnetar.db.state_models import TENANT_SCOPED_STATE_TABLES, LedgerCount, ProcessedEvent
from magnetar.db.state_writer import ERASURE_LOCK_KEY, BatchOutcome, commit_batch
from magnetar.db.user_erasure import user_tables
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings

LEDGER = ProcessedEvent.__tablename__
COUNTS = LedgerCount.__tablename__
# Replaced wholesale at the switch; the ledger is merged instead.
REPLACED = tuple(t for t in TENANT_SCOPED_STATE_TABLES if t != LEDGER)

# How long a session holding a tenant's pipeline may stay silent before PostgreSQL ends it.
STALL_S = 30

_CLAIM_KEY = "hashtextextended('magnetar.rebuild/' || %(tenant)s, 0)"
_SCOPE = "SELECT set_config('magnetar.tenant', %(tenant)s, true)"


class RebuildRunning(Exception):
    """Another session is rebuilding the tenant."""


class HoldTimeout(Exception):
    """The tenant's batches in flight did not finish within the hold's lock timeout."""


def shadow_schema(tenant_id: str) -> str:
    """The schema of a tenant's rebuild. Tenant ids are at most 40 bytes of ``[a-z0-9-]``
    (`tenants.slugs`): the name is one of its own and fits PostgreSQL's 63 bytes."""
    return "rebuild_" + tenant_id.replace("-", "_")


@dataclass(frozen=True)
class StateFigures:
    """What one copy of a tenant's state holds: rows per table and events counted."""

    rows: Mapping[str, int]
    counted: int


class ShadowState:
    def __init__(self, conn: psycopg.Connection[Any], tenant_id: str) -> None:
        """`conn`: the owner's, in autocommit mode, used by nothing else meanwhile."""
        self._conn = conn
        self.tenant_id = tenant_id
        self.schema = shadow_schema(tenant_id)
        # Where the live tables are: the connection's schema before the shadow's goes first.
        found = conn.execute("SELECT current_schema()").fetchone()
        self._live = str(found[0]) if found else "public"
        self._params = {"tenant": tenant_id}
        self._signals = SignalSettings()

    # -- life cycle ----------------------------------------------------------------------

    def claim(self) -> None:
        """Become the tenant's one rebuild (until the connection closes) and make the shadow
        schema, empty; raises `RebuildRunning` if another session has the tenant."""
        row = self._conn.execute(f"SELECT pg_try_advisory_lock({_CLAIM_KEY})", self._params)
        claimed = row.fetchone()
        if not claimed or not claimed[0]:
            raise RebuildRunning(self.tenant_id)
        self.drop()
        shadow = sql.Identifier(self.schema)
        with self._conn.transaction():
            self._conn.execute(sql.SQL("CREATE SCHEMA {}").format(shadow))
            for table in TENANT_SCOPED_STATE_TABLES:
                self._conn.execute(
                    sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                        shadow,
                        sql.Identifier(table),
                        sql.Identifier(self._live),
                        sql.Identifier(table),
                    )
                )
        self._conn.execute(
            sql.SQL("SET search_path TO {}, {}").format(shadow, sql.Identifier(self._live))
        )

    def live_ledger(self) -> tuple[int, int, int | None]:
        """The live state's events counted, ids its ledger remembers, and the epoch ms of its
        oldest remembered commit (None for an empty ledger)."""
        live = sql.Identifier(self._live)
        with self._conn.transaction():
            self._conn.execute(_SCOPE, self._params)
            counted = self._conn.execute(
                sql.SQL(
                    "SELECT coalesce(sum(counted), 0) FROM {}.{} WHERE tenant_id = %(tenant)s"
                ).format(live, sql.Identifier(COUNTS)),
                self._params,
            ).fetchone()
            ledger = self._conn.execute(
                sql.SQL(
                    "SELECT count(*), (extract(epoch FROM min(committed_at)) * 1000)::bigint"
                    " FROM {}.{} WHERE tenant_id = %(tenant)s"
                ).format(live, sql.Identifier(LEDGER)),
                self._params,
            ).fetchone()
        assert counted is not None and ledger is not None
        return int(counted[0]), int(ledger[0]), None if ledger[1] is None else int(ledger[1])

    def drop(self) -> None:
        self._conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
        )

    def started_at(self) -> datetime:
        """The database's clock as erasures stamp their tombstones (``erased_at``)."""
        row = self._conn.execute("SELECT localtimestamp").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    # -- writing the shadow --------------------------------------------------------------

    def commit(
        self, events: Sequence[EnrichedEvent], accepted_at_ms: Mapping[str, int], now_ms: int
    ) -> BatchOutcome:
        """One batch into the shadow, counted once by the shadow's ledger, unannounced."""
        return commit_batch(
            self._conn,
            self.tenant_id,
            events,
            self._signals,
            now_ms=now_ms,
            accepted_at_ms=accepted_at_ms,
            announce=False,
        )

    # -- holding the pipeline, comparing, switching ---------------------------------------

    def hold(self, lock_timeout_s: float = 30.0) -> None:
        """Hold the tenant's commits (and erasures) until `release`; see the module doc.

        While it holds, a session silent for `STALL_S` (a rebuild stopped or hung) is ended
        by PostgreSQL, and the hold with it: a stuck rebuild cannot stop a tenant's pipeline
        for longer than that."""
        self._conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        try:
            self._conn.execute(f"SELECT pg_advisory_lock({ERASURE_LOCK_KEY})", self._params)
        except psycopg.errors.LockNotAvailable:
            raise HoldTimeout(self.tenant_id) from None
        finally:
            self._conn.execute("RESET lock_timeout")
        for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            self._conn.execute(f"SET {setting} = '{STALL_S * 1000}ms'")

    def release(self) -> None:
        self._conn.execute(f"SELECT pg_advisory_unlock({ERASURE_LOCK_KEY})", self._params)
        for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            self._conn.execute(f"RESET {setting}")

    def figures(self, *, shadow: bool) -> StateFigures:
        """Rows per table and events counted, of the shadow or of the live state."""
        schema = sql.Identifier(self.schema if shadow else self._live)
        rows: dict[str, int] = {}
        with self._conn.transaction():
            self._conn.execute(_SCOPE, self._params)
            for table in TENANT_SCOPED_STATE_TABLES:
                query = sql.SQL("SELECT count(*) FROM {}.{} WHERE tenant_id = %(tenant)s")
                found = self._conn.execute(
                    query.format(schema, sql.Identifier(table)), self._params
                ).fetchone()
                rows[table] = int(found[0]) if found else 0
            query = sql.SQL(
                "SELECT coalesce(sum(counted), 0) FROM {}.{} WHERE tenant_id = %(tenant)s"
            )
            found = self._conn.execute(
                query.format(schema, sql.Identifier(COUNTS)), self._params
            ).fetchone()
        return StateFigures(rows, int(found[0]) if found else 0)

    def unreplayed(self) -> int:
        """Ids the live ledger remembers that the shadow's has not counted: events the live
        state counted that the topics no longer hold (or, before the catch-up, newer ones)."""
        query = sql.SQL(
            "SELECT count(*) FROM {live}.{ledger} l WHERE l.tenant_id = %(tenant)s AND NOT EXISTS"
            " (SELECT 1 FROM {shadow}.{ledger} s"
            "  WHERE s.tenant_id = %(tenant)s AND s.event_id = l.event_id)"
        ).format(
            live=sql.Identifier(self._live),
            shadow=sql.Identifier(self.schema),
            ledger=sql.Identifier(LEDGER),
        )
        with self._conn.transaction():
            self._conn.execute(_SCOPE, self._params)
            found = self._conn.execute(query, self._params).fetchone()
        return int(found[0]) if found else 0

    def switch(self, erased_since: datetime) -> int:
        """Put the shadow in the live state's place (module doc); call it while holding.
        Returns the shadow rows dropped for users erased since `erased_since`."""
        live, shadow = sql.Identifier(self._live), sql.Identifier(self.schema)
        params = {**self._params, "since": erased_since}
        erased = 0
        with self._conn.transaction():
            self._conn.execute(_SCOPE, self._params)
            keyed_by_user = [t.name for t in user_tables() if t.name in TENANT_SCOPED_STATE_TABLES]
            for user_table in keyed_by_user:
                query = sql.SQL(
                    "DELETE FROM {shadow}.{table} s USING {live}.erased_users e"
                    " WHERE s.tenant_id = %(tenant)s AND e.tenant_id = %(tenant)s"
                    " AND e.user_id = s.user_id AND e.erased_at >= %(since)s"
                ).format(shadow=shadow, live=live, table=sql.Identifier(user_table))
                erased += self._conn.execute(query, params).rowcount
            for table in REPLACED:
                name, columns = sql.Identifier(table), self._columns(table)
                self._conn.execute(
                    sql.SQL("DELETE FROM {}.{} WHERE tenant_id = %(tenant)s").format(live, name),
                    params,
                )
                self._conn.execute(
                    sql.SQL(
                        "INSERT INTO {live}.{name} ({columns})"
                        " SELECT {columns} FROM {shadow}.{name} WHERE tenant_id = %(tenant)s"
                    ).format(live=live, shadow=shadow, name=name, columns=columns),
                    params,
                )
            self._conn.execute(
                sql.SQL(
                    "INSERT INTO {live}.{name} ({columns})"
                    " SELECT {columns} FROM {shadow}.{name} WHERE tenant_id = %(tenant)s"
                    " ON CONFLICT DO NOTHING"
                ).format(
                    live=live,
                    shadow=shadow,
                    name=sql.Identifier(LEDGER),
                    columns=self._columns(LEDGER),
                ),
                params,
            )
            notify_everything(self._conn, self.tenant_id)
        return erased

    def _columns(self, table: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c.name) for c in Base.metadata.tables[table].c)
