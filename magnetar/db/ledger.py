"""Upkeep of the processed-event ledger: how long an id is kept, its expiry, and its count.

`expire_ledger` deletes only a tenant's rows older than `ledger_keep_ms`, in bounded short
transactions; `ledger_keep_ms` is never shorter than `LEDGER_FLOOR_MS` nor the tenant's
retention; `counted_events` reads the exact per-tenant counter; `LedgerUpkeep` runs paced,
one instance per tenant at a time, and never raises (docs/pipeline.md, "Ledger expiry")."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from magnetar.dedupe import DEFAULT_WINDOW_MS
from magnetar.event_contract import MAX_AGE_S, MAX_FUTURE_S

log = logging.getLogger(__name__)

# A repeat of an event passes enrich only while its timestamp is at most the contract's age
# limit (TOO_OLD) before its new acceptance, and the timestamp was at most the future skew
# after the first acceptance; dedupe's window is shorter by default but may be widened.
LEDGER_FLOOR_MS = max((MAX_AGE_S + MAX_FUTURE_S) * 1000, DEFAULT_WINDOW_MS)

# Counter shards: parallel instances of one tenant commit on different connections, so each
# mostly advances its own row and no commit waits on another's counter update.
COUNT_SHARDS = 8

_SCOPE = "SELECT set_config('magnetar.tenant', %(tenant)s, true)"

_RETENTION = """
SELECT (quotas->>'retention_minutes')::bigint * 60000 FROM tenants WHERE tenant_id = %(tenant)s
"""

# Only one pass per tenant at a time, across instances and processes.
_EXPIRY_LOCK = (
    "SELECT pg_try_advisory_xact_lock(hashtextextended('magnetar.ledger-expiry/' || %(tenant)s, 0))"
)

# The inner scan is a range of the (tenant_id, committed_at) index; the delete finds each
# row by its primary key.
_EXPIRE_BATCH = """
DELETE FROM processed_events p
USING (
  SELECT event_id FROM processed_events
  WHERE tenant_id = %(tenant)s
    AND committed_at < (clock_timestamp() AT TIME ZONE 'UTC') - %(keep_ms)s::float8 * interval '1 millisecond'
  ORDER BY committed_at
  LIMIT %(rows)s
) old
WHERE p.tenant_id = %(tenant)s AND p.event_id = old.event_id
"""

COUNT_SQL = f"""
INSERT INTO ledger_counts AS c (tenant_id, shard, counted)
VALUES (%(tenant)s, pg_backend_pid() %% {COUNT_SHARDS}, %(counted)s)
ON CONFLICT (tenant_id, shard) DO UPDATE SET counted = c.counted + EXCLUDED.counted
"""

_COUNTED = "SELECT coalesce(sum(counted), 0) FROM ledger_counts WHERE tenant_id = %(tenant)s"


def ledger_keep_ms(conn: psycopg.Connection[Any], tenant_id: str) -> int:
    """How long the tenant's ledger keeps an id: the floor, or its Pulsar retention if longer."""
    row = conn.execute(_RETENTION, {"tenant": tenant_id}).fetchone()
    retention_ms = int(row[0]) if row and row[0] is not None else 0
    return max(LEDGER_FLOOR_MS, retention_ms)


def expire_ledger(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    *,
    keep_ms: int,
    batch_rows: int = 1_000,
    max_batches: int = 10,
) -> int:
    """Delete up to `max_batches` * `batch_rows` ledger rows older than `keep_ms`; how many.

    `conn` must be in autocommit mode (each batch commits on its own). Stops early when a
    batch finds fewer rows than it may take, or when another session is expiring the tenant.
    """
    if keep_ms < LEDGER_FLOOR_MS:
        raise ValueError(f"keep_ms {keep_ms} is shorter than the ledger's floor {LEDGER_FLOOR_MS}")
    deleted = 0
    params = {"tenant": tenant_id, "keep_ms": keep_ms, "rows": batch_rows}
    for _ in range(max_batches):
        with conn.transaction():
            conn.execute(_SCOPE, params)
            locked = conn.execute(_EXPIRY_LOCK, params).fetchone()
            if not locked or not locked[0]:
                break
            batch = conn.execute(_EXPIRE_BATCH, params).rowcount
        deleted += batch
        if batch < batch_rows:
            break
    return deleted


def counted_events(conn: psycopg.Connection[Any], tenant_id: str) -> int:
    """Events counted in the tenant's state so far (the ledger's inserts, never lowered)."""
    with conn.transaction():
        conn.execute(_SCOPE, {"tenant": tenant_id})
        row = conn.execute(_COUNTED, {"tenant": tenant_id}).fetchone()
    return int(row[0]) if row else 0


@dataclass
class LedgerUpkeep:
    """Paces `expire_ledger` for one tenant between the materializer's batches.

    A pass (one batch of at most `batch_rows`) is due every `interval_s`; while passes find
    full batches (a backlog of expired rows) every `interval_s / 10`, so one instance keeps
    up with 10 * `batch_rows` / `interval_s` events/s while each pass stays short.
    """

    tenant_id: str
    interval_s: float = 5.0
    batch_rows: int = 2_000
    clock: Callable[[], float] = time.monotonic
    _next_s: float | None = None

    def run_if_due(self, conn: psycopg.Connection[Any] | None) -> int:
        """Expire one bounded batch of old rows when due; rows deleted (0 on any failure)."""
        now = self.clock()
        if conn is None or conn.closed or (self._next_s is not None and now < self._next_s):
            return 0
        self._next_s = now + self.interval_s
        try:
            keep_ms = ledger_keep_ms(conn, self.tenant_id)
            deleted = expire_ledger(
                conn, self.tenant_id, keep_ms=keep_ms, batch_rows=self.batch_rows, max_batches=1
            )
        except psycopg.Error:
            # Expiry is housekeeping: the next pass retries, commits must go on.
            log.exception("ledger expiry for %s failed", self.tenant_id)
            return 0
        if deleted >= self.batch_rows:
            self._next_s = now + self.interval_s / 10
        return deleted
