from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.logic.dedupe_window import (
    DEFAULT_WINDOW_MS,
    DedupeConfig,
    DedupeReason,
    DedupeWindow,
    Sighting,
    decode_sighting,
    encode_sighting,
)
from functions.logic.state_port import InMemoryStore
from tests.unit.functions.logic.factories import NOW_MS

HOUR_MS = 60 * 60 * 1000


def test_first_sighting_is_forwarded() -> None:
    window = DedupeWindow()

    decision = window.check("e1", NOW_MS)

    assert decision.reason is DedupeReason.FIRST_SEEN
    assert not decision.drop
    assert decision.first_seen_ms == NOW_MS


def test_repeat_inside_the_window_is_dropped_and_counted() -> None:
    window = DedupeWindow()
    window.check("e1", NOW_MS)

    decision = window.check("e1", NOW_MS + 23 * HOUR_MS)

    assert decision.drop
    assert decision.reason is DedupeReason.DUPLICATE
    assert decision.first_seen_ms == NOW_MS
    assert window.stats.dropped == 1
    assert window.stats.forwarded == 1


def test_default_window_is_24_hours() -> None:
    assert DedupeConfig().window_ms == DEFAULT_WINDOW_MS == 24 * HOUR_MS


def test_repeat_one_millisecond_before_the_window_ends_is_dropped() -> None:
    window = DedupeWindow(DedupeConfig(window_ms=1000))
    window.check("e1", NOW_MS)

    assert window.check("e1", NOW_MS + 999).drop


def test_repeat_when_the_window_has_ended_is_forwarded_as_a_new_occurrence() -> None:
    window = DedupeWindow(DedupeConfig(window_ms=1000))
    window.check("e1", NOW_MS)

    decision = window.check("e1", NOW_MS + 1000)

    assert not decision.drop
    assert decision.first_seen_ms == NOW_MS + 1000
    # The new occurrence opens a new window.
    assert window.check("e1", NOW_MS + 1999).drop


def test_other_event_ids_are_independent() -> None:
    window = DedupeWindow()
    window.check("e1", NOW_MS)

    assert not window.check("e2", NOW_MS).drop


def test_repeat_after_a_restart_is_dropped_from_the_durable_record() -> None:
    store = InMemoryStore()
    DedupeWindow(store=store).check("e1", NOW_MS, delivery_id=b"m1")

    restarted = DedupeWindow(store=store)
    decision = restarted.check("e1", NOW_MS + 5 * 60_000, delivery_id=b"m2")

    assert decision.drop
    assert decision.read_store
    assert decision.first_seen_ms == NOW_MS


def test_record_older_than_the_window_does_not_drop_after_a_restart() -> None:
    store = InMemoryStore()
    config = DedupeConfig(window_ms=HOUR_MS)
    DedupeWindow(config, store=store).check("e1", NOW_MS)

    restarted = DedupeWindow(config, store=store)
    decision = restarted.check("e1", NOW_MS + HOUR_MS + 1)

    assert decision.reason is DedupeReason.OUTSIDE_WINDOW
    # The record now holds the new sighting, so the window restarts from it.
    assert DedupeWindow(config, store=store).check("e1", NOW_MS + 2 * HOUR_MS).drop


def test_durable_record_exactly_one_window_old_no_longer_drops() -> None:
    store = InMemoryStore()
    config = DedupeConfig(window_ms=HOUR_MS)
    DedupeWindow(config, store=store).check("e1", NOW_MS)

    # Same boundary as the in-memory expiry: the window is [first seen, first seen + window).
    assert DedupeWindow(config, store=store).check("e1", NOW_MS + HOUR_MS - 1).drop
    assert not DedupeWindow(config, store=store).check("e2", NOW_MS).drop
    assert not DedupeWindow(config, store=store).check("e2", NOW_MS + HOUR_MS).drop


def test_redelivery_of_the_first_message_is_forwarded_not_dropped() -> None:
    store = InMemoryStore()
    DedupeWindow(store=store).check("e1", NOW_MS, delivery_id=b"msg-7")

    # The instance died before the ack; the broker redelivers the same message elsewhere.
    decision = DedupeWindow(store=store).check("e1", NOW_MS + 10, delivery_id=b"msg-7")

    assert decision.reason is DedupeReason.REDELIVERY
    assert not decision.drop


def test_redelivery_within_the_same_instance_is_forwarded() -> None:
    window = DedupeWindow()
    window.check("e1", NOW_MS, delivery_id=b"msg-7")

    assert window.check("e1", NOW_MS + 10, delivery_id=b"msg-7").reason is DedupeReason.REDELIVERY


def test_client_repeat_is_dropped_even_after_a_redelivery_of_the_original() -> None:
    window = DedupeWindow(store=InMemoryStore())
    window.check("e1", NOW_MS, delivery_id=b"msg-7")
    window.check("e1", NOW_MS + 1, delivery_id=b"msg-7")

    assert window.check("e1", NOW_MS + 2, delivery_id=b"msg-9").drop


def test_missing_delivery_ids_never_count_as_a_redelivery() -> None:
    window = DedupeWindow()
    window.check("e1", NOW_MS)

    assert window.check("e1", NOW_MS + 1).drop


def test_cache_never_holds_more_than_its_bound_and_counts_evictions() -> None:
    window = DedupeWindow(DedupeConfig(max_cached_ids=3))

    for n in range(10):
        window.check(f"e{n}", NOW_MS + n)

    assert len(window) == 3
    assert window.stats.evicted == 7


def test_evicted_id_is_still_dropped_through_the_store() -> None:
    store = InMemoryStore()
    window = DedupeWindow(DedupeConfig(max_cached_ids=2), store=store)
    window.check("e1", NOW_MS)
    window.check("e2", NOW_MS + 1)
    window.check("e3", NOW_MS + 2)  # pushes e1 out of memory

    decision = window.check("e1", NOW_MS + 3)

    assert decision.drop
    assert decision.read_store
    assert window.stats.store_hits == 1


def test_without_a_store_an_evicted_id_passes_rather_than_risking_a_wrong_drop() -> None:
    window = DedupeWindow(DedupeConfig(max_cached_ids=1))
    window.check("e1", NOW_MS)
    window.check("e2", NOW_MS + 1)

    decision = window.check("e1", NOW_MS + 2)

    assert decision.reason is DedupeReason.FIRST_SEEN


def test_repeat_found_in_memory_costs_no_store_read() -> None:
    store = InMemoryStore()
    window = DedupeWindow(store=store)
    window.check("e1", NOW_MS)
    reads_after_first = store.reads

    decision = window.check("e1", NOW_MS + 1)

    assert decision.drop
    assert not decision.read_store
    assert store.reads == reads_after_first


def test_repeat_read_from_the_store_warms_the_cache() -> None:
    store = InMemoryStore()
    DedupeWindow(store=store).check("e1", NOW_MS)
    restarted = DedupeWindow(store=store)
    restarted.check("e1", NOW_MS + 1)
    reads = store.reads

    restarted.check("e1", NOW_MS + 2)

    assert store.reads == reads


def test_expired_ids_leave_memory_and_their_durable_record_is_deleted() -> None:
    store = InMemoryStore()
    window = DedupeWindow(DedupeConfig(window_ms=1000), store=store)
    window.check("old", NOW_MS)

    window.check("new", NOW_MS + 1000)

    assert len(window) == 1
    assert window.stats.expired == 1
    assert "dedupe/id/old" not in store.values
    assert "dedupe/id/new" in store.values


def test_expired_records_are_kept_when_deletion_is_off() -> None:
    store = InMemoryStore()
    window = DedupeWindow(DedupeConfig(window_ms=1000, delete_expired=False), store=store)
    window.check("old", NOW_MS)

    window.check("new", NOW_MS + 1000)

    assert len(window) == 1
    assert "dedupe/id/old" in store.values
    assert store.deletes == 0


@pytest.mark.parametrize("event_id", ["", "x" * 129])
def test_empty_or_overlong_ids_are_forwarded_unrecorded(event_id: str) -> None:
    store = InMemoryStore()
    window = DedupeWindow(store=store)

    first = window.check(event_id, NOW_MS)
    second = window.check(event_id, NOW_MS + 1)

    assert first.reason is second.reason is DedupeReason.UNCHECKABLE_ID
    assert store.values == {}
    assert len(window) == 0


def test_drops_are_counted_durably() -> None:
    store = InMemoryStore()
    window = DedupeWindow(store=store, counters=store)
    window.check("e1", NOW_MS)
    window.check("e1", NOW_MS + 1)
    window.check("e1", NOW_MS + 2)

    assert store.counters == {"dedupe/dropped": 2}


def test_unreadable_record_is_treated_as_absent_and_overwritten() -> None:
    store = InMemoryStore()
    store.values["dedupe/id/e1"] = b"\x00garbage"
    window = DedupeWindow(store=store)

    decision = window.check("e1", NOW_MS)

    assert decision.reason is DedupeReason.FIRST_SEEN
    assert window.stats.unreadable_records == 1
    assert decode_sighting(store.values["dedupe/id/e1"]) == Sighting(NOW_MS, b"")


class FailingPutStore(InMemoryStore):
    def put(self, key: str, value: bytes) -> None:
        raise ConnectionError("state storage unavailable")


def test_store_failure_propagates_and_leaves_the_id_unrecorded() -> None:
    store = FailingPutStore()
    window = DedupeWindow(store=store)

    with pytest.raises(ConnectionError):
        window.check("e1", NOW_MS, delivery_id=b"m1")

    # The runtime nacks; the redelivery must not be mistaken for a repeat.
    assert len(window) == 0


@pytest.mark.parametrize(
    "config",
    [{"window_ms": 0}, {"max_cached_ids": 0}, {"max_event_id_length": 0}],
)
def test_config_rejects_non_positive_bounds(config: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DedupeConfig(**config)  # type: ignore[arg-type]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.binary(max_size=64))
def test_sighting_record_round_trips(first_seen_ms: int, delivery_id: bytes) -> None:
    sighting = Sighting(first_seen_ms, delivery_id)

    assert decode_sighting(encode_sighting(sighting)) == sighting


# A stream of (event_id, milliseconds since the previous event, restart before this event?).
_streams = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.integers(min_value=0, max_value=400),
        st.booleans(),
    ),
    max_size=60,
)


def _reference_drops(stream: list[tuple[str, int, bool]], window_ms: int) -> list[bool]:
    """What an unbounded, never-restarted exact window decides."""
    first_seen: dict[str, int] = {}
    now = NOW_MS
    drops = []
    for event_id, step, _ in stream:
        now += step
        seen = first_seen.get(event_id)
        duplicate = seen is not None and now - seen < window_ms
        if not duplicate:
            first_seen[event_id] = now
        drops.append(duplicate)
    return drops


@settings(max_examples=300)
@given(_streams, st.integers(min_value=1, max_value=4))
def test_bounded_memory_and_restarts_decide_exactly_like_an_unbounded_window(
    stream: list[tuple[str, int, bool]], max_cached_ids: int
) -> None:
    config = DedupeConfig(window_ms=1000, max_cached_ids=max_cached_ids)
    store = InMemoryStore()
    window = DedupeWindow(config, store=store)
    now = NOW_MS
    drops = []
    for event_id, step, restart in stream:
        now += step
        if restart:
            window = DedupeWindow(config, store=store)
        drops.append(window.check(event_id, now).drop)
        assert len(window) <= max_cached_ids

    assert drops == _reference_drops(stream, 1000)


@settings(max_examples=300)
@given(_streams, st.integers(min_value=1, max_value=4))
def test_without_a_store_every_drop_is_a_real_repeat(
    stream: list[tuple[str, int, bool]], max_cached_ids: int
) -> None:
    window = DedupeWindow(DedupeConfig(window_ms=1000, max_cached_ids=max_cached_ids))
    seen: dict[str, int] = {}
    now = NOW_MS
    for event_id, step, _ in stream:
        now += step
        decision = window.check(event_id, now)
        if decision.drop:
            assert event_id in seen and now - seen[event_id] < 1000
        else:
            seen[event_id] = now
