"""The PostgreSQL state store agrees with the in-memory reference and counts events once."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from magnetar.db.state_reader import PostgresStateReader
from magnetar.db.state_writer import commit_batch
from magnetar.personalization import records
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import UserKey
from magnetar.settings import Settings

pytestmark = pytest.mark.integration

NOW = 1_780_000_000_000
TYPES = (records.VIEW, records.CLICK, records.ADD_TO_CART, records.PURCHASE, records.CANCEL)


def _batches(tenant: str, seed: int = 7) -> list[list[EnrichedEvent]]:
    rng = random.Random(seed)
    categories = {f"i{n}": (f"c{n % 4}",) if n % 5 else () for n in range(30)}
    batches: list[list[EnrichedEvent]] = []
    at = NOW - 3 * 86_400_000
    for b in range(5):
        batch = []
        for n in range(120):
            at += rng.randint(1_000, 600_000)
            user = f"u{rng.randint(0, 19)}"
            item = f"i{min(int(rng.paretovariate(1.2)) - 1, 29)}"
            batch.append(
                EnrichedEvent(
                    event_id=f"e{b}-{n}",
                    tenant_id=tenant,
                    user_id=user,
                    session_id=f"{user}-s{at // 3_600_000}",
                    type=rng.choice(TYPES),
                    item_id=item,
                    occurred_at=at,
                    categories=categories[item],
                )
            )
        rng.shuffle(batch)
        batches.append(batch)
    return batches


@pytest.fixture
def pool(settings: Settings) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True) as p:
        yield p


def _assert_scored_equal(left: Any, right: Any) -> None:
    assert [k for k, _ in left] == [k for k, _ in right]
    assert [v for _, v in left] == pytest.approx([v for _, v in right], rel=1e-9)


def test_postgres_state_matches_in_memory_fold_and_counts_each_event_once(
    settings: Settings, pool: ConnectionPool[Any]
) -> None:
    tenant = f"state-{uuid.uuid4().hex[:8]}"
    signals = SignalSettings()
    memory = MemoryState(signals)
    batches = _batches(tenant)
    skew = 5 * 60_000
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for batch in batches:
            batch_users = [UserKey(tenant, u) for u in sorted({e.user_id for e in batch})]
            memory.apply(fold_events(batch, signals, memory.recent_for(batch_users), NOW + skew))
            outcome = commit_batch(
                conn, tenant, batch, signals, now_ms=NOW, max_future_skew_ms=skew
            )
            assert (outcome.counted, outcome.already_counted) == (len(batch), 0)
        # A redelivered batch, and a batch mixing old and new ids, change nothing old.
        again = commit_batch(conn, tenant, batches[1], signals, now_ms=NOW)
        assert (again.counted, again.already_counted) == (0, len(batches[1]))

    postgres = PostgresStateReader(pool, signals)
    users = sorted({e.user_id for batch in batches for e in batch})
    items = sorted({e.item_id for batch in batches for e in batch})
    for user in users:
        _assert_scored_equal(
            postgres.user_item_affinities(tenant, user, NOW, 10),
            memory.user_item_affinities(tenant, user, NOW, 10),
        )
        _assert_scored_equal(
            postgres.user_category_affinities(tenant, user, NOW, 5),
            memory.user_category_affinities(tenant, user, NOW, 5),
        )
        assert postgres.purchased_items(tenant, user) == memory.purchased_items(tenant, user)
        assert postgres.user_activity(tenant, user) == memory.user_activity(tenant, user)
        assert list(postgres.recent_items(tenant, user, 20)) == list(
            memory.recent_items(tenant, user, 20)
        )
    pg_neighbours = postgres.neighbours(tenant, items, NOW, 5)
    mem_neighbours = memory.neighbours(tenant, items, NOW, 5)
    assert pg_neighbours.keys() == mem_neighbours.keys()
    for item in pg_neighbours:
        _assert_scored_equal(pg_neighbours[item], mem_neighbours[item])
    for window, _ in signals.trending_windows:
        _assert_scored_equal(
            postgres.trending(tenant, window, NOW, 10), memory.trending(tenant, window, NOW, 10)
        )
        by_category = postgres.trending_in_categories(tenant, window, ["c1", "c2"], NOW, 5)
        expected = memory.trending_in_categories(tenant, window, ["c1", "c2"], NOW, 5)
        for category in ("c1", "c2"):
            _assert_scored_equal(by_category[category], expected[category])
    assert postgres.item_categories(tenant, items) == memory.item_categories(tenant, items)


def test_application_role_sees_no_state_without_a_tenant(settings: Settings) -> None:
    tenant = f"state-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        commit_batch(conn, tenant, _batches(tenant)[0], SignalSettings(), now_ms=NOW)
        unscoped = conn.execute(
            "SELECT count(*) FROM user_item_signals WHERE tenant_id = %s", (tenant,)
        ).fetchone()
        assert unscoped == (0,)
