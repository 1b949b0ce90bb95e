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


def test_repeat_after_a_restart_is_dropped_from_a_preloaded_sighting() -> None:
    restarted = DedupeWindow()
    restarted.preload("e1", Sighting(NOW_MS, b"m1"))

    decision = restarted.check("e1", NOW_MS + 5 * 60_000, delivery_id=b"m2")

    assert decision.drop
    assert decision.first_seen_ms == NOW_MS


def test_a_sighting_older_than_the_window_is_a_new_occurrence() -> None:
    window = DedupeWindow(DedupeConfig(window_ms=HOUR_MS))
    window.check("e0", NOW_MS)
    # Preloaded behind a newer entry, so the front-first expiry has not reached it.
    window.preload("e1", Sighting(NOW_MS - HOUR_MS - 1, b""))

    decision = window.check("e1", NOW_MS + 1)

    assert decision.reason is DedupeReason.OUTSIDE_WINDOW
    assert not decision.drop
    # The new occurrence opens a new window.
    assert window.check("e1", NOW_MS + 2).drop


def test_redelivery_of_the_first_message_is_forwarded_not_dropped() -> None:
    # The instance died before the ack; the broker redelivers the same message elsewhere.
    restarted = DedupeWindow()
    restarted.preload("e1", Sighting(NOW_MS, b"msg-7"))

    decision = restarted.check("e1", NOW_MS + 10, delivery_id=b"msg-7")

    assert decision.reason is DedupeReason.REDELIVERY
    assert not decision.drop


def test_redelivery_within_the_same_instance_is_forwarded() -> None:
    window = DedupeWindow()
    window.check("e1", NOW_MS, delivery_id=b"msg-7")

    assert window.check("e1", NOW_MS + 10, delivery_id=b"msg-7").reason is DedupeReason.REDELIVERY


def test_client_repeat_is_dropped_even_after_a_redelivery_of_the_original() -> None:
    window = DedupeWindow()
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


def test_an_evicted_id_passes_rather_than_risking_a_wrong_drop() -> None:
    window = DedupeWindow(DedupeConfig(max_cached_ids=1))
    window.check("e1", NOW_MS)
    window.check("e2", NOW_MS + 1)

    decision = window.check("e1", NOW_MS + 2)

    assert decision.reason is DedupeReason.FIRST_SEEN


def test_expired_ids_leave_memory() -> None:
    window = DedupeWindow(DedupeConfig(window_ms=1000))
    window.check("old", NOW_MS)

    window.check("new", NOW_MS + 1000)

    assert len(window) == 1
    assert window.stats.expired == 1
    assert not window.check("old", NOW_MS + 1001).drop


@pytest.mark.parametrize("event_id", ["", "x" * 129])
def test_empty_or_overlong_ids_are_forwarded_unrecorded(event_id: str) -> None:
    window = DedupeWindow()

    first = window.check(event_id, NOW_MS)
    second = window.check(event_id, NOW_MS + 1)

    assert first.reason is second.reason is DedupeReason.UNCHECKABLE_ID
    assert len(window) == 0


@pytest.mark.parametrize(
    "config",
    [{"window_ms": 0}, {"max_cached_ids": 0}, {"max_event_id_length": 0}],
)
def test_config_rejects_non_positive_bounds(config: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DedupeConfig(**config)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.binary(max_size=64))
def test_sighting_record_round_trips(first_seen_ms: int, delivery_id: bytes) -> None:
    sighting = Sighting(first_seen_ms, delivery_id)

    assert decode_sighting(encode_sighting(sighting)) == sighting


@pytest.mark.parametrize("raw", [b"", b"\x00garbage", b"\x02" + bytes(8)])
def test_an_unreadable_sighting_record_decodes_to_none(raw: bytes) -> None:
    assert decode_sighting(raw) is None


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
@given(_streams)
def test_restarts_from_preloaded_sightings_decide_exactly_like_an_unbounded_window(
    stream: list[tuple[str, int, bool]],
) -> None:
    config = DedupeConfig(window_ms=1000)
    persisted: dict[str, Sighting] = {}  # the segment log: first sightings, the latest wins
    window = DedupeWindow(config)
    now = NOW_MS
    drops = []
    for event_id, step, restart in stream:
        now += step
        if restart:
            window = DedupeWindow(config)
            for known, sighting in persisted.items():
                if now - sighting.first_seen_ms < config.window_ms:  # what replay returns
                    window.preload(known, sighting)
        decision = window.check(event_id, now)
        if not decision.drop:
            persisted[event_id] = Sighting(now, b"")
        drops.append(decision.drop)

    assert drops == _reference_drops(stream, 1000)


@settings(max_examples=300)
@given(_streams, st.integers(min_value=1, max_value=4))
def test_bounded_memory_only_drops_real_repeats(
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
