"""A tenant's clock: its newest counted event, capped at wall-clock now, kept current by
the change stream and read again at most once per interval."""

from __future__ import annotations

import pytest

from magnetar.db.change_stream import Change
from magnetar.personalization import records
from magnetar.personalization.decay import DAY_MS
from magnetar.serving.memory import NotInMemory, memory_only
from magnetar.serving.personalization import PersonalizationServing, TrendingQuery
from magnetar.serving.tenant_clock import TenantClock
from tests.unit.personalization.builders import T0, event
from tests.unit.serving.fakes import TENANT, FakeServingState

WALL = T0 + 400 * DAY_MS


class Newest:
    """The state's newest event time per tenant, counting reads."""

    def __init__(self, **newest: int | None) -> None:
        self.newest = dict(newest)
        self.reads = 0

    def __call__(self, tenant_id: str) -> int | None:
        self.reads += 1
        return self.newest.get(tenant_id)


class Ticks:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def _clock(newest: Newest, ticks: Ticks, live: bool = True) -> TenantClock:
    clock = TenantClock(newest, min_interval_ms=1_000, monotonic_ms=ticks)
    clock.set_live(live)
    return clock


def test_the_clock_is_the_newest_event_capped_at_wall_clock_now() -> None:
    clock = _clock(Newest(old=T0, ahead=WALL + 60_000), Ticks())
    assert clock.now_ms("old", WALL) == T0
    assert clock.now_ms("ahead", WALL) == WALL
    # No state yet: wall-clock now.
    assert clock.now_ms("empty", WALL) == WALL


def test_a_value_is_kept_until_a_change_of_its_tenant_is_heard() -> None:
    newest, ticks = Newest(a=T0, b=T0), Ticks()
    clock = _clock(newest, ticks)
    clock.now_ms("a", WALL)
    clock.now_ms("b", WALL)
    newest.newest["a"] = newest.newest["b"] = T0 + DAY_MS
    ticks.ms = 60_000
    assert clock.now_ms("a", WALL) == T0, "no change heard: kept"
    clock.changed(Change("a", users=("u",)))
    assert clock.now_ms("a", WALL) == T0 + DAY_MS
    assert clock.now_ms("b", WALL) == T0, "another tenant's change does not touch b"
    assert newest.reads == 3


def test_under_a_stream_of_changes_a_tenant_is_read_at_most_once_per_interval() -> None:
    newest, ticks = Newest(a=T0), Ticks()
    clock = _clock(newest, ticks)
    clock.now_ms("a", WALL)
    for step in range(10):
        ticks.ms = step * 100
        clock.changed(Change("a", users=("u",)))
        clock.now_ms("a", WALL)
    assert newest.reads == 1
    ticks.ms = 1_000
    clock.now_ms("a", WALL)
    assert newest.reads == 2


def test_a_read_that_raced_a_change_is_read_again() -> None:
    newest, ticks = Newest(a=T0), Ticks()
    clock = _clock(newest, ticks)
    read = newest.__call__

    def racing(tenant_id: str) -> int | None:
        found = read(tenant_id)
        clock.changed(Change(tenant_id, everything=True))  # committed while we read
        newest.newest["a"] = T0 + DAY_MS
        return found

    clock._newest = racing  # the clock calls what it was given
    assert clock.now_ms("a", WALL) == T0
    clock._newest = read
    ticks.ms = 1_000
    assert clock.now_ms("a", WALL) == T0 + DAY_MS


def test_without_the_stream_every_value_is_read_again_after_the_interval() -> None:
    newest, ticks = Newest(a=T0), Ticks()
    clock = _clock(newest, ticks, live=False)
    clock.now_ms("a", WALL)
    ticks.ms = 999
    clock.now_ms("a", WALL)
    assert newest.reads == 1
    ticks.ms = 1_000
    clock.now_ms("a", WALL)
    assert newest.reads == 2
    # Reconnecting may have missed changes: due again too.
    clock.set_live(True)
    ticks.ms = 2_000
    clock.now_ms("a", WALL)
    assert newest.reads == 3


def test_in_memory_only_mode_a_value_to_read_is_not_in_memory() -> None:
    newest, ticks = Newest(a=T0), Ticks()
    clock = _clock(newest, ticks)
    with memory_only(), pytest.raises(NotInMemory):
        clock.now_ms("a", WALL)
    clock.now_ms("a", WALL)
    with memory_only():
        assert clock.now_ms("a", WALL) == T0
    assert newest.reads == 1


def test_history_served_at_its_end_still_has_an_hourly_trending_list() -> None:
    # A year-old purchase: at wall-clock now its 1h score is far below the decay's floor.
    state = FakeServingState([event(records.PURCHASE, "tent", user_id="u", at=T0)])
    query = TrendingQuery(window="HOUR", k=5)
    at_wall = PersonalizationServing(state, clock_ms=lambda: WALL)
    assert at_wall.trending(TENANT, query) == []
    clock = _clock(Newest(**{TENANT: T0}), Ticks())
    at_its_end = PersonalizationServing(state, clock_ms=lambda: WALL, tenant_clock=clock)
    assert [item.item_id for item in at_its_end.trending(TENANT, query)] == ["tent"]


class Jobs:
    """A `BackgroundRefresh` stand-in: jobs queued once per key, run when the test says."""

    def __init__(self) -> None:
        self.queued: dict[object, object] = {}

    def __call__(self, key: object, job: object) -> None:
        self.queued.setdefault(key, job)

    def run(self) -> None:
        jobs, self.queued = self.queued, {}
        for job in jobs.values():
            job()  # type: ignore[operator]


def test_with_a_background_refresh_a_due_value_is_served_while_it_is_read_again() -> None:
    newest, ticks, jobs = Newest(a=T0), Ticks(), Jobs()
    clock = TenantClock(newest, min_interval_ms=1_000, monotonic_ms=ticks, refresh=jobs)
    clock.set_live(True)
    with memory_only(), pytest.raises(NotInMemory):
        clock.now_ms("a", WALL)  # nothing held yet: read inline, so not in memory-only mode
    assert clock.now_ms("a", WALL) == T0
    newest.newest["a"] = T0 + DAY_MS
    ticks.ms = 1_000
    clock.changed(Change("a", users=("u",)))
    with memory_only():  # due, yet no request waits: the held value, one read queued
        assert clock.now_ms("a", WALL) == T0
        assert clock.now_ms("a", WALL) == T0
    assert (newest.reads, len(jobs.queued)) == (1, 1)
    jobs.run()
    with memory_only():
        assert clock.now_ms("a", WALL) == T0 + DAY_MS
    assert newest.reads == 2
