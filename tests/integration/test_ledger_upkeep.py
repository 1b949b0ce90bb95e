"""The processed-event ledger expires by age without letting a repeat count twice.

Against the real PostgreSQL: rows older than the tenant's keep time go (in bounded batches),
recent rows stay, a redelivered event inside the window is still refused, and the tenant's
count of counted events — what the exporter reads — does not drop when rows expire.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from magnetar.db.ledger import (
    LEDGER_FLOOR_MS,
    LedgerUpkeep,
    counted_events,
    expire_ledger,
    ledger_keep_ms,
)
from magnetar.db.state_writer import commit_batch
from magnetar.personalization import records
from magnetar.personalization.decay import DAY_MS, HOUR_MS
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.settings import Settings

pytestmark = pytest.mark.integration


def _events(tenant: str, tag: str, count: int) -> list[EnrichedEvent]:
    now = int(time.time() * 1000)
    return [
        EnrichedEvent(
            event_id=f"{tag}-{n}",
            tenant_id=tenant,
            user_id=f"u{n % 3}",
            session_id=f"s-{tag}",
            type=records.VIEW,
            item_id=f"i{n}",
            occurred_at=now - 1_000 + n,
        )
        for n in range(count)
    ]


def _commit(conn: psycopg.Connection[Any], tenant: str, events: list[EnrichedEvent]) -> Any:
    return commit_batch(conn, tenant, events, SignalSettings(), now_ms=int(time.time() * 1000))


def _age(conn: psycopg.Connection[Any], tenant: str, prefix: str, age_ms: int) -> None:
    """Make the ledger rows of events `prefix-*` look committed `age_ms` ago."""
    with conn.transaction():
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        conn.execute(
            "UPDATE processed_events SET committed_at = (clock_timestamp() AT TIME ZONE 'UTC')"
            " - %s::float8 * interval '1 millisecond' WHERE tenant_id = %s AND event_id LIKE %s",
            (age_ms, tenant, f"{prefix}-%"),
        )


def _ids(conn: psycopg.Connection[Any], tenant: str) -> set[str]:
    with conn.transaction():
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        rows = conn.execute(
            "SELECT event_id FROM processed_events WHERE tenant_id = %s", (tenant,)
        ).fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def tenant() -> str:
    return f"ledger-{uuid.uuid4().hex[:8]}"


def test_old_rows_go_recent_rows_stay_and_a_redelivery_is_still_refused(
    conn: psycopg.Connection[Any], tenant: str
) -> None:
    assert _commit(conn, tenant, _events(tenant, "old", 3)).counted == 3
    assert _commit(conn, tenant, _events(tenant, "edge", 2)).counted == 2
    assert _commit(conn, tenant, _events(tenant, "new", 3)).counted == 3
    _age(conn, tenant, "old", LEDGER_FLOOR_MS + DAY_MS)
    _age(conn, tenant, "edge", LEDGER_FLOOR_MS - HOUR_MS)

    keep_ms = ledger_keep_ms(conn, tenant)
    assert keep_ms == LEDGER_FLOOR_MS  # no tenants row: no longer retention to honour
    assert expire_ledger(conn, tenant, keep_ms=keep_ms) == 3

    assert _ids(conn, tenant) == {"edge-0", "edge-1", "new-0", "new-1", "new-2"}
    # A redelivery of an event still inside the window changes nothing.
    again = _commit(conn, tenant, _events(tenant, "edge", 1) + _events(tenant, "new", 1))
    assert (again.counted, again.already_counted) == (0, 2)
    # The count the exporter reads is the events counted, not the rows left.
    assert counted_events(conn, tenant) == 8


def test_expiry_deletes_in_bounded_batches(conn: psycopg.Connection[Any], tenant: str) -> None:
    _commit(conn, tenant, _events(tenant, "old", 25))
    _age(conn, tenant, "old", LEDGER_FLOOR_MS + DAY_MS)

    assert expire_ledger(conn, tenant, keep_ms=LEDGER_FLOOR_MS, batch_rows=10, max_batches=2) == 20
    assert len(_ids(conn, tenant)) == 5
    assert expire_ledger(conn, tenant, keep_ms=LEDGER_FLOOR_MS, batch_rows=10, max_batches=2) == 5
    assert _ids(conn, tenant) == set()


def test_a_longer_tenant_retention_keeps_rows_longer(
    conn: psycopg.Connection[Any], tenant: str
) -> None:
    conn.execute(
        "INSERT INTO tenants (tenant_id, display_name, quotas) VALUES (%s, %s, %s::jsonb)",
        (tenant, "ledger test", json.dumps({"retention_minutes": 30 * 24 * 60})),
    )
    try:
        _commit(conn, tenant, _events(tenant, "mid", 2))
        _age(conn, tenant, "mid", 20 * DAY_MS)  # past the floor, inside the retention

        assert ledger_keep_ms(conn, tenant) == 30 * DAY_MS
        assert expire_ledger(conn, tenant, keep_ms=ledger_keep_ms(conn, tenant)) == 0
        assert _ids(conn, tenant) == {"mid-0", "mid-1"}
    finally:
        conn.execute("DELETE FROM tenants WHERE tenant_id = %s", (tenant,))


def test_a_keep_time_below_the_floor_is_refused(conn: psycopg.Connection[Any], tenant: str) -> None:
    with pytest.raises(ValueError, match="floor"):
        expire_ledger(conn, tenant, keep_ms=DAY_MS)


def test_upkeep_paces_its_passes_and_catches_up_on_a_backlog(
    conn: psycopg.Connection[Any], tenant: str
) -> None:
    now = [1_000.0]
    upkeep = LedgerUpkeep(tenant, interval_s=10, batch_rows=3, clock=lambda: now[0])
    _commit(conn, tenant, _events(tenant, "a", 5))
    _age(conn, tenant, "a", LEDGER_FLOOR_MS + DAY_MS)
    assert upkeep.run_if_due(conn) == 3  # a full batch: more may wait
    assert upkeep.run_if_due(conn) == 0  # not due yet
    now[0] += 1  # catching up: due again after a tenth of the interval
    assert upkeep.run_if_due(conn) == 2

    _commit(conn, tenant, _events(tenant, "b", 2))
    _age(conn, tenant, "b", LEDGER_FLOOR_MS + DAY_MS)
    now[0] += 9.9  # caught up: the full interval applies
    assert upkeep.run_if_due(conn) == 0
    now[0] += 0.1
    assert upkeep.run_if_due(conn) == 2
