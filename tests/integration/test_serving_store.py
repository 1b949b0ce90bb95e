"""The serving side's PostgreSQL: schema, one connection per request scoped to its tenant,
erasure semantics."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg_pool import ConnectionPool
from sqlalchemy import create_engine

import magnetar.db.catalog_models
import magnetar.db.state_models  # (registers the state tables)
from functions.logic.validation import DEFAULT_POLICY
from magnetar.db.engine import make_engine, make_sessionmaker, sqlalchemy_url
from magnetar.db.models import Base
from magnetar.db.serving_reader import ServingStateReader, open_serving_pool
from magnetar.db.state_reader import PostgresStateReader
from magnetar.db.state_writer import ERASURE_LOCK_KEY, commit_batch
from magnetar.db.user_erasure import PostgresErasureStore, user_tables
from magnetar.errors import Unavailable
from magnetar.personalization import records
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import UserKey
from magnetar.processes import free_port
from magnetar.serving.erasure import UserErasure
from magnetar.serving.personalization import PersonalizationServing, RecommendQuery
from magnetar.settings import Settings
from magnetar.workload.generator import GeneratorSettings, generate

pytestmark = pytest.mark.integration

NOW = 1_780_000_000_000
SIGNALS = SignalSettings()


def _tenant() -> str:
    return f"serve-{uuid.uuid4().hex[:8]}"


def _event(tenant: str, user: str, item: str, at: int, n: int = 0) -> EnrichedEvent:
    return EnrichedEvent(
        event_id=f"{user}-{item}-{at}-{n}",
        tenant_id=tenant,
        user_id=user,
        session_id=f"{user}-s",
        type=records.PURCHASE,
        item_id=item,
        occurred_at=at,
        categories=("outdoor",),
    )


def _rows(settings: Settings, tenant: str, user: str) -> dict[str, int]:
    """Rows of `user` in every user-keyed table."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        return {
            table.name: int(
                conn.execute(
                    f"SELECT count(*) FROM {table.name} WHERE tenant_id = %s AND user_id = %s",
                    (tenant, user),
                ).fetchone()[0]  # type: ignore[index]
            )
            for table in user_tables()
        }


@pytest.fixture
def erasure(settings: Settings) -> Iterator[PostgresErasureStore]:
    engine = make_engine(settings.database_url, pool_size=2)
    yield PostgresErasureStore(make_sessionmaker(engine))
    engine.dispose()


def test_models_and_migrations_agree_and_serving_tables_force_row_level_security(
    settings: Settings,
) -> None:
    engine = create_engine(sqlalchemy_url(settings.database_owner_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            forced = connection.exec_driver_sql(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relname IN ('catalog_items', 'erased_users') ORDER BY relname"
            ).fetchall()
    finally:
        engine.dispose()
    assert forced == [("catalog_items", True, True), ("erased_users", True, True)]
    assert magnetar.db.catalog_models.SERVING_TABLES == ("catalog_items", "erased_users")


def test_user_tables_are_every_user_keyed_state_table() -> None:
    assert {t.name for t in user_tables()} == {
        "user_item_signals",
        "user_category_affinities",
        "user_activity",
    }


class CountingPool(ConnectionPool[Any]):
    checkouts = 0

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        CountingPool.checkouts += 1
        with super().connection(timeout) as conn:
            yield conn


def test_a_recommendation_reads_everything_on_one_connection(settings: Settings) -> None:
    tenant = _tenant()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        events = [_event(tenant, f"u{n % 4}", f"i{n % 6}", NOW - n * 1000, n) for n in range(40)]
        commit_batch(conn, tenant, events, SIGNALS, now_ms=NOW)
    with CountingPool(settings.database_url, min_size=1, max_size=1) as pool:
        serving = PersonalizationServing(ServingStateReader(pool), clock_ms=lambda: NOW)
        CountingPool.checkouts = 0
        result = serving.recommend(tenant, RecommendQuery(k=3, user_id="u1"))
        assert len(result.items) == 3
        assert CountingPool.checkouts == 1


def test_a_connection_serving_one_tenant_then_another_reads_only_the_current_ones(
    settings: Settings,
) -> None:
    """The request scope is set on the pooled connection for the session: every request must
    set it again before its first read, whichever read comes first, even after a request
    that failed half-way."""
    first, second = _tenant(), _tenant()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for tenant, item in ((first, "only-first"), (second, "only-second")):
            # Two items viewed together, so each is the other's neighbour.
            events = [
                _event(tenant, "shared-user", f"{item}{n % 2 or ''}", NOW - n * 1000, n)
                for n in range(4)
            ]
            commit_batch(conn, tenant, events, SIGNALS, now_ms=NOW)
    with ConnectionPool(settings.database_url, min_size=1, max_size=1) as pool:
        reader = ServingStateReader(pool)

        def user_items(tenant: str) -> set[str]:
            with reader.request(tenant):
                return {
                    s.item_id for s in reader.user_item_affinities(tenant, "shared-user", NOW, 10)
                }

        def neighbour_seeds(tenant: str) -> set[str]:
            with reader.request(tenant):
                return set(reader.neighbours(tenant, ["only-first", "only-second"], NOW, 5))

        assert user_items(first) == {"only-first", "only-first1"}
        # The same connection, first read not about a user: still the second tenant's scope.
        assert neighbour_seeds(second) == {"only-second"}
        assert user_items(second) == {"only-second", "only-second1"}
        with pytest.raises(RuntimeError), reader.request(first):
            reader.user_item_affinities(first, "shared-user", NOW, 10)
            raise RuntimeError("the request fails after its first read")
        assert neighbour_seeds(second) == {"only-second"}
        assert user_items(second) == {"only-second", "only-second1"}


def test_a_connection_goes_back_to_the_pool_without_its_tenant_scope(settings: Settings) -> None:
    """Whatever takes the connection next (a request that reads before scoping, a future
    reader) must find no tenant set: row-level security then shows it nothing."""
    tenant = _tenant()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        commit_batch(conn, tenant, [_event(tenant, "u1", "i1", NOW)], SIGNALS, now_ms=NOW)
    pool = open_serving_pool(settings.database_url, max_size=1)
    try:
        reader = ServingStateReader(pool)

        def left_behind() -> tuple[Any, int]:
            with pool.connection() as conn:
                scope = conn.execute("SELECT current_setting('magnetar.tenant', true)")
                visible = conn.execute("SELECT count(*) FROM user_item_signals")
                return scope.fetchone()[0], visible.fetchone()[0]

        with reader.request(tenant):
            assert reader.user_item_affinities(tenant, "u1", NOW, 10)
        assert left_behind() in {(None, 0), ("", 0)}
        with pytest.raises(RuntimeError), reader.request(tenant):
            reader.neighbours(tenant, ["i1"], NOW, 5)
            raise RuntimeError("the request fails after its first read")
        assert left_behind() in {(None, 0), ("", 0)}
    finally:
        pool.close()


def test_a_reader_pointed_at_a_closed_port_raises_unavailable(settings: Settings) -> None:
    url = f"postgresql://magnetar_app@127.0.0.1:{free_port()}/magnetar"
    pool = open_serving_pool(url, timeout_s=1.0)
    try:
        serving = PersonalizationServing(ServingStateReader(pool))
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            serving.recommend("acme", RecommendQuery(k=3, user_id="u1"))
        assert caught.value.reason == "DATABASE_UNAVAILABLE"
        assert time.monotonic() - started < 5
    finally:
        pool.close()


def test_events_of_an_erased_user_from_before_the_erasure_change_nothing(
    settings: Settings, erasure: PostgresErasureStore
) -> None:
    tenant = _tenant()
    erased_at = NOW - 10_000
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        commit_batch(
            conn, tenant, [_event(tenant, "gone", "tent", NOW - 60_000)], SIGNALS, now_ms=NOW
        )
        deleted = erasure.erase(tenant, ["gone"], erased_at)
        assert deleted == {
            "user_item_signals": 1,
            "user_category_affinities": 1,
            "user_activity": 1,
        }
        late = [_event(tenant, "gone", "lamp", erased_at - 1), _event(tenant, "kept", "lamp", NOW)]
        outcome = commit_batch(conn, tenant, late, SIGNALS, now_ms=NOW)
        assert (outcome.counted, outcome.erased) == (2, 1)
        assert set(_rows(settings, tenant, "gone").values()) == {0}
        assert _rows(settings, tenant, "kept")["user_activity"] == 1
        # Redelivered: already in the ledger, still nothing.
        again = commit_batch(conn, tenant, late, SIGNALS, now_ms=NOW)
        assert (again.counted, again.already_counted, again.erased) == (0, 2, 0)
        # After the erasure the user may come back, with only what came after.
        back = commit_batch(
            conn, tenant, [_event(tenant, "gone", "mug", erased_at)], SIGNALS, now_ms=NOW
        )
        assert back.erased == 0
        assert _rows(settings, tenant, "gone")["user_item_signals"] == 1


def test_an_event_accepted_before_the_erasure_but_stamped_ahead_is_dropped_too(
    settings: Settings, erasure: PostgresErasureStore
) -> None:
    """The gateway and the pipeline accept `occurred_at` up to 5 minutes after acceptance:
    such an event, still in flight when DeleteUser runs, must not rebuild the user."""
    tenant = _tenant()
    report = UserErasure(erasure, clock_ms=lambda: NOW).delete_user(tenant, "gone", "")
    ahead = NOW + DEFAULT_POLICY.max_future_skew_ms  # the furthest a valid event may be
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        outcome = commit_batch(
            conn, tenant, [_event(tenant, "gone", "tent", ahead)], SIGNALS, now_ms=NOW
        )
    assert outcome.erased == 1
    assert set(_rows(settings, tenant, "gone").values()) == {0}
    assert report.erased_before_ms > ahead


def test_an_erasure_waits_for_a_batch_in_progress_and_erases_what_it_wrote(
    settings: Settings, erasure: PostgresErasureStore
) -> None:
    tenant = _tenant()
    finished = threading.Event()
    report: dict[str, int] = {}

    def erase() -> None:
        report.update(erasure.erase(tenant, ["new"], NOW))
        finished.set()

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        # The outer transaction keeps the batch "in progress" (its lock held) until it ends.
        with conn.transaction():
            commit_batch(
                conn, tenant, [_event(tenant, "new", "tent", NOW - 1)], SIGNALS, now_ms=NOW
            )
            eraser = threading.Thread(target=erase)
            eraser.start()
            assert not finished.wait(0.5), "the erasure did not wait for the batch"
        eraser.join(10)
    assert finished.is_set()
    assert report["user_activity"] == 1
    assert set(_rows(settings, tenant, "new").values()) == {0}


def test_a_batch_waits_for_an_erasure_in_progress_and_then_drops_the_users_events(
    settings: Settings,
) -> None:
    tenant = _tenant()
    outcomes: list[Any] = []
    with psycopg.connect(settings.database_url, autocommit=True) as eraser:
        with eraser.transaction():
            # What PostgresErasureStore.erase does first: the exclusive lock, the tombstone.
            eraser.execute(
                "SELECT set_config('magnetar.tenant', %(tenant)s, true)", {"tenant": tenant}
            )
            eraser.execute(f"SELECT pg_advisory_xact_lock({ERASURE_LOCK_KEY})", {"tenant": tenant})
            eraser.execute(
                "INSERT INTO erased_users (tenant_id, user_id, erased_before) VALUES (%s, %s, %s)",
                (tenant, "late", NOW),
            )

            def commit() -> None:
                with psycopg.connect(settings.database_url, autocommit=True) as conn:
                    batch = [_event(tenant, "late", "tent", NOW - 5)]
                    outcomes.append(commit_batch(conn, tenant, batch, SIGNALS, now_ms=NOW))

            batch = threading.Thread(target=commit)
            batch.start()
            time.sleep(0.5)
            assert not outcomes, "the batch did not wait for the erasure"
        batch.join(10)
    assert outcomes and outcomes[0].erased == 1
    assert set(_rows(settings, tenant, "late").values()) == {0}


@pytest.fixture
def generated(settings: Settings) -> tuple[str, list[EnrichedEvent], MemoryState]:
    """A tenant's state from generated shoppers, in PostgreSQL and in memory, plus one
    shopper with more item rows than the serving reader reads at once."""
    tenant = _tenant()
    # Repeats of an event id left out: the ledger would count them once, the memory not.
    history = _deduplicated(
        generate(
            GeneratorSettings(tenant_id=tenant, users=200, items=300, start_ms=NOW - 86_400_000),
            seed=3,
            max_events=6_000,
        )
    )
    heavy = [_event(tenant, "heavy", f"h{n}", NOW - 3_600_000 + n, n) for n in range(2_001)]
    memory = MemoryState(SIGNALS)
    skew = 5 * 60_000
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for start in range(0, len(history), 500):
            batch = history[start : start + 500]
            users = [UserKey(tenant, u) for u in sorted({e.user_id for e in batch})]
            memory.apply(fold_events(batch, SIGNALS, memory.recent_for(users), NOW + skew))
            commit_batch(conn, tenant, batch, SIGNALS, now_ms=NOW, max_future_skew_ms=skew)
        commit_batch(conn, tenant, heavy, SIGNALS, now_ms=NOW, max_future_skew_ms=skew)
    return tenant, history, memory


def test_the_serving_readers_neighbours_agree_with_the_state_readers_and_memory(
    settings: Settings, generated: tuple[str, list[EnrichedEvent], MemoryState]
) -> None:
    tenant, history, memory = generated
    items = sorted({e.item_id for e in history})
    with ConnectionPool(settings.database_url, min_size=1, max_size=1) as pool:
        serving = ServingStateReader(pool).neighbours(tenant, items, NOW, 7)
        plain = PostgresStateReader(pool).neighbours(tenant, items, NOW, 7)
    expected = memory.neighbours(tenant, items, NOW, 7)
    assert serving.keys() == plain.keys() == expected.keys()
    for item in serving:
        assert [s.item_id for s in serving[item]] == [s.item_id for s in expected[item]]
        assert [s.score for s in serving[item]] == pytest.approx(
            [s.score for s in plain[item]], rel=1e-9
        )


def test_the_serving_readers_user_answers_in_a_request_are_the_state_readers(
    settings: Settings, generated: tuple[str, list[EnrichedEvent], MemoryState]
) -> None:
    tenant, history, _ = generated
    users = [*sorted({e.user_id for e in history}), "heavy", "nobody"]
    later = NOW + 86_400_000
    with ConnectionPool(settings.database_url, min_size=1, max_size=1) as pool:
        plain = PostgresStateReader(pool)
        serving = ServingStateReader(pool)
        for user in users:
            expected = (
                list(plain.recent_items(tenant, user, 20)),
                list(plain.user_item_affinities(tenant, user, later, 10)),
                list(plain.user_category_affinities(tenant, user, later, 5)),
                plain.purchased_items(tenant, user),
                plain.user_activity(tenant, user),
            )
            with serving.request(tenant):
                found = (
                    list(serving.recent_items(tenant, user, 20)),
                    list(serving.user_item_affinities(tenant, user, later, 10)),
                    list(serving.user_category_affinities(tenant, user, later, 5)),
                    serving.purchased_items(tenant, user),
                    serving.user_activity(tenant, user),
                )
            assert found == expected, user


def _deduplicated(events: Iterable[EnrichedEvent]) -> list[EnrichedEvent]:
    seen: set[str] = set()
    kept = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            kept.append(event)
    return kept
