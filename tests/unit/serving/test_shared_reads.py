"""Tenant-wide lists come from memory, stale ones are refreshed in the background, too old
ones are read again; personal reads always go through."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence

import pytest

from magnetar.db.change_stream import Change
from magnetar.personalization.state import RecentItem, ScoredItem
from magnetar.serving.memory import NotInMemory, memory_only
from magnetar.serving.shared_reads import BackgroundRefresh, Freshness, SharedReadsCache
from tests.unit.serving.fakes import NOW, TENANT, FakeServingState, shop


class CountingState(FakeServingState):
    def __init__(self) -> None:
        super().__init__(shop())
        self.reads: list[str] = []

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        self.reads.append(f"trending {window}")
        return super().trending(tenant_id, window, now_ms, limit)

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        self.reads.append(f"in {','.join(categories)}")
        return super().trending_in_categories(
            tenant_id, window, categories, now_ms, limit_per_category
        )

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        self.reads.append(f"neighbours {','.join(item_ids)}")
        return super().neighbours(tenant_id, item_ids, now_ms, limit_per_item)

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        self.reads.append("recent")
        return super().recent_items(tenant_id, user_id, limit)


class Harness:
    def __init__(self) -> None:
        self.state = CountingState()
        self.now = 0
        self.jobs: list[tuple[Hashable, Callable[[], object]]] = []
        self.cache = SharedReadsCache(
            self.state,
            trending=Freshness(ttl_ms=1_000, max_stale_ms=10_000),
            neighbours=Freshness(ttl_ms=1_000, max_stale_ms=10_000),
            clock_ms=lambda: self.now,
            refresh=lambda key, job: self.jobs.append((key, job)),
        )

    def run_jobs(self) -> None:
        jobs, self.jobs = self.jobs, []
        for _, job in jobs:
            job()


def test_a_fresh_list_is_read_once_per_key() -> None:
    h = Harness()
    first = h.cache.trending(TENANT, "7d", NOW, 3)
    assert h.cache.trending(TENANT, "7d", NOW, 3) == first
    h.cache.trending_in_categories(TENANT, "7d", ["outdoor"], NOW, 5)
    both = h.cache.trending_in_categories(TENANT, "7d", ["outdoor", "kitchen"], NOW, 5)
    assert [s.item_id for s in both["kitchen"]] == ["mug"]
    assert h.state.reads == ["trending 7d", "in outdoor", "in kitchen"]
    assert h.jobs == []


def test_a_stale_list_is_served_at_once_and_refreshed_once_in_the_background() -> None:
    h = Harness()
    first = h.cache.trending(TENANT, "7d", NOW, 3)
    h.now = 1_001
    assert h.cache.trending(TENANT, "7d", NOW, 3) == first
    assert h.cache.trending(TENANT, "7d", NOW, 3) == first
    assert h.state.reads == ["trending 7d"]
    assert len(h.jobs) == 2  # the refresher itself keeps one per key (see the next test)
    h.run_jobs()
    assert h.state.reads == ["trending 7d"] * 3
    h.cache.trending(TENANT, "7d", NOW, 3)
    assert h.jobs == []  # fresh again


def test_a_list_nobody_asked_for_in_a_while_is_read_before_answering() -> None:
    h = Harness()
    h.cache.neighbours(TENANT, ["tent"], NOW, 5)
    h.now = 10_001
    h.cache.neighbours(TENANT, ["tent"], NOW, 5)
    assert h.state.reads == ["neighbours tent", "neighbours tent"]
    assert h.jobs == []


def test_neighbours_are_kept_per_item_and_items_without_any_are_asked_again() -> None:
    h = Harness()
    first = h.cache.neighbours(TENANT, ["tent", "nope"], NOW, 5)
    assert set(first) == {"tent"}
    again = h.cache.neighbours(TENANT, ["tent", "mug", "nope"], NOW, 5)
    assert again["tent"] == first["tent"]
    assert "nope" not in again
    assert h.state.reads == ["neighbours tent,nope", "neighbours mug,nope"]


def test_tenants_and_personal_reads_are_never_shared() -> None:
    h = Harness()
    h.cache.trending(TENANT, "7d", NOW, 3)
    assert h.cache.trending("globex", "7d", NOW, 3) == ()
    h.cache.recent_items(TENANT, "c1", 5)
    h.cache.recent_items(TENANT, "c1", 5)
    assert h.state.reads.count("recent") == 2
    assert h.state.reads.count("trending 7d") == 2


def test_the_background_refresh_runs_each_key_once_and_survives_a_failure() -> None:
    refresh = BackgroundRefresh()
    ran: list[str] = []
    gate = threading.Event()
    done = threading.Event()

    def slow() -> None:
        gate.wait(5)
        ran.append("a")

    def failing() -> None:
        raise RuntimeError("database down")

    def last() -> None:
        ran.append("c")
        done.set()

    refresh("a", slow)
    refresh("a", slow)  # already queued: dropped
    refresh("b", failing)
    refresh("c", last)
    gate.set()
    assert done.wait(5)
    assert ran == ["a", "c"]


def test_the_background_refresh_runs_at_most_its_rate_however_many_are_stale() -> None:
    # Whatever the traffic makes stale, the refreshes' own load stays bounded.
    refresh = BackgroundRefresh(max_per_second=50)
    started: list[float] = []
    done = threading.Event()

    def job() -> None:
        started.append(time.monotonic())
        if len(started) == 6:
            done.set()

    for key in range(6):
        refresh(key, job)
    assert done.wait(5)
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert min(gaps) >= 0.019, gaps


def test_neighbour_lists_stay_fresh_longer_than_trending_lists() -> None:
    state = CountingState()
    now = [0]
    jobs: list[Hashable] = []
    cache = SharedReadsCache(
        state,
        trending=Freshness(ttl_ms=1_000, max_stale_ms=10_000),
        neighbours=Freshness(ttl_ms=60_000, max_stale_ms=600_000),
        clock_ms=lambda: now[0],
        refresh=lambda key, job: jobs.append(key),
    )
    cache.trending(TENANT, "7d", NOW, 3)
    cache.neighbours(TENANT, ["tent"], NOW, 5)
    now[0] = 2_000
    cache.trending(TENANT, "7d", NOW, 3)
    cache.neighbours(TENANT, ["tent"], NOW, 5)
    assert jobs == [("trending", TENANT, "7d", 3)]


def test_a_change_of_everything_of_a_tenant_drops_its_lists_and_only_its() -> None:
    h = Harness()
    h.cache.trending(TENANT, "7d", NOW, 3)
    h.cache.neighbours(TENANT, ["tent"], NOW, 5)
    # Changes naming users (every commit), or another tenant, leave the lists alone.
    h.cache.changed(Change(TENANT, users=("c1",)))
    h.cache.changed(Change("globex", everything=True))
    h.cache.trending(TENANT, "7d", NOW, 3)
    assert h.state.reads == ["trending 7d", "neighbours tent"]
    # A rebuild's switch: the next requests rank from the new state.
    h.cache.changed(Change(TENANT, everything=True))
    h.cache.trending(TENANT, "7d", NOW, 3)
    h.cache.neighbours(TENANT, ["tent"], NOW, 5)
    assert h.state.reads[2:] == ["trending 7d", "neighbours tent"]


def test_a_list_read_before_the_tenant_was_dropped_is_not_put_back() -> None:
    h = Harness()
    read = h.state.trending

    def switched_while_reading(
        tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        found = read(tenant_id, window, now_ms, limit)
        h.cache.changed(Change(TENANT, everything=True))
        return found

    h.state.trending = switched_while_reading  # type: ignore[method-assign]
    h.cache.trending(TENANT, "7d", NOW, 3)
    h.state.trending = read  # type: ignore[method-assign]
    h.cache.trending(TENANT, "7d", NOW, 3)
    assert h.state.reads == ["trending 7d", "trending 7d"]


def test_in_memory_only_mode_missing_lists_come_with_a_fill_of_just_them() -> None:
    h = Harness()
    h.cache.neighbours(TENANT, ["tent"], NOW, 5)
    with memory_only(), pytest.raises(NotInMemory) as raised:
        h.cache.neighbours(TENANT, ["tent", "sleeping-bag"], NOW, 5)
    assert raised.value.fill is not None
    raised.value.fill()
    assert h.state.reads == ["neighbours tent", "neighbours sleeping-bag"]
    with memory_only():
        both = h.cache.neighbours(TENANT, ["tent", "sleeping-bag"], NOW, 5)
    assert set(both) == {"tent", "sleeping-bag"}
    assert len(h.state.reads) == 2
