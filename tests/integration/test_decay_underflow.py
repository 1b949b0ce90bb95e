"""Rows far older than their half-life neither stop the pipeline's commits nor the reads.

PostgreSQL raises "value out of range: underflow" where a float8 result rounds to zero; an
item idle for about 1,075 half-lives (45 days for the one-hour trending window) used to make
every batch that touched it fail, and every read that ranked it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from magnetar.db.decay_sql import decayed_sql
from magnetar.db.serving_reader import ServingStateReader
from magnetar.db.state_reader import PostgresStateReader
from magnetar.db.state_writer import commit_batch
from magnetar.db.user_snapshot import read_user
from magnetar.personalization import records
from magnetar.personalization.decay import DAY_MS, HOUR_MS, decayed
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings, TenantPersonalization
from magnetar.serving.personalization import (
    PersonalizationServing,
    ProfileQuery,
    RecommendQuery,
    SimilarItemsQuery,
    TrendingQuery,
)
from magnetar.settings import Settings

pytestmark = pytest.mark.integration

NOW = 1_780_000_000_000
OLD = NOW - 60 * DAY_MS
# Every decayed table at 1,440 half-lives: far past where a plain power(2, -x) underflows.
HOURLY = SignalSettings(affinity_half_life_ms=HOUR_MS, covisitation_half_life_ms=HOUR_MS)


def _events(tenant: str, at: int, tag: str) -> list[EnrichedEvent]:
    """A view then a purchase of two items in one session: a row in every decayed table."""
    return [
        EnrichedEvent(
            event_id=f"{tag}-{n}",
            tenant_id=tenant,
            user_id="u1",
            session_id=f"s-{tag}",
            type=kind,
            item_id=item,
            occurred_at=at + n * 1_000,
            categories=("outdoor",),
        )
        for n, (kind, item) in enumerate(
            [(records.VIEW, "i1"), (records.VIEW, "i2"), (records.PURCHASE, "i1")]
        )
    ]


@pytest.fixture
def pool(settings: Settings) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True) as p:
        yield p


@pytest.mark.parametrize("signals", [SignalSettings(), HOURLY], ids=["default", "hourly"])
def test_an_event_on_rows_sixty_days_old_commits_and_every_read_answers(
    settings: Settings, pool: ConnectionPool[Any], signals: SignalSettings
) -> None:
    tenant = f"decay-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        old = commit_batch(conn, tenant, _events(tenant, OLD, "old"), signals, now_ms=OLD)
        assert old.counted == 3
        # The merge decays each stored row by 60 days before adding the new event.
        new = commit_batch(conn, tenant, _events(tenant, NOW, "new"), signals, now_ms=NOW)
        assert new.counted == 3
        # Reads 60 days after the last event: every stored row is past the cut-off now.
        later = NOW + 60 * DAY_MS
        with conn.transaction():
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
            snapshot = read_user(conn, tenant, "u1", [])
        assert snapshot.item_affinities(later, signals.affinity_half_life_ms, 10) is not None

    plain = PostgresStateReader(pool, signals)
    for at in (NOW, later):
        assert plain.user_item_affinities(tenant, "u1", at, 10) is not None
        assert plain.user_category_affinities(tenant, "u1", at, 10) is not None
        assert plain.neighbours(tenant, ["i1", "i2"], at, 10) is not None
        for window, _ in signals.trending_windows:
            assert plain.trending(tenant, window, at, 10) is not None
            assert plain.trending_in_categories(tenant, window, ["outdoor"], at, 10) is not None
    # Right after the new events the stored scores are the new contributions alone.
    hourly = signals is HOURLY
    trending_1h = plain.trending(tenant, "1h", NOW + 2_000, 10)
    assert [item.item_id for item in trending_1h] == ["i1", "i2"]
    if hourly:
        assert plain.neighbours(tenant, ["i1"], later, 10) == {}
        assert plain.user_item_affinities(tenant, "u1", later, 10) == []

    for at in (NOW + 2_000, later):
        serving = PersonalizationServing(
            ServingStateReader(pool, signals),
            settings=lambda _: TenantPersonalization(signals=signals),
            clock_ms=lambda at=at: at,  # type: ignore[misc]
        )
        assert serving.recommend(tenant, RecommendQuery(k=5, user_id="u1")) is not None
        assert serving.similar_items(tenant, SimilarItemsQuery(item_id="i1", k=5)) is not None
        for window in ("HOUR", "DAY", "WEEK"):
            assert serving.trending(tenant, TrendingQuery(window=window, k=5)) is not None
            assert (
                serving.trending(tenant, TrendingQuery(window=window, k=5, category="outdoor"))
                is not None
            )
        assert serving.user_profile(tenant, ProfileQuery(user_id="u1")) is not None


@pytest.mark.parametrize(
    ("score", "elapsed_ms", "half_life_ms"),
    [
        (3.0, 0, HOUR_MS),
        (3.0, -5_000, HOUR_MS),
        (3.0, 2 * HOUR_MS, HOUR_MS),
        (-2.5, 10 * HOUR_MS, HOUR_MS),
        (1.0, 999 * HOUR_MS, HOUR_MS),
        (1.0, 1_000 * HOUR_MS, HOUR_MS),
        (1e-15, 999 * HOUR_MS, HOUR_MS),
        (1e-21, 1, HOUR_MS),
        (1e300, 1_100 * HOUR_MS, HOUR_MS),
    ],
)
def test_sql_decay_is_the_python_decay(
    settings: Settings, score: float, elapsed_ms: int, half_life_ms: int
) -> None:
    sql = decayed_sql("%(score)s::float8", "%(elapsed)s::bigint", "%(h)s::bigint")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT {sql}", {"score": score, "elapsed": elapsed_ms, "h": half_life_ms}
        ).fetchone()
    assert row is not None
    assert row[0] == decayed(score, elapsed_ms, half_life_ms)
