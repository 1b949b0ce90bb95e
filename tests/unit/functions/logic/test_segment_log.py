from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from functions.logic.dedupe_window import (
    DedupeConfig,
    DedupeReason,
    DedupeWindow,
    Sighting,
    decode_sighting,
    encode_sighting,
)
from functions.logic.segment_log import (
    PeriodicSegments,
    SegmentLog,
    decode_pairs,
    encode_pairs,
    replay,
)
from tests.unit.functions.logic.memory_store import InMemoryStore


@given(st.dictionaries(st.text(max_size=40), st.binary(max_size=200), max_size=30))
def test_pairs_survive_encoding(pairs: dict[str, bytes]) -> None:
    assert dict(decode_pairs(encode_pairs(pairs))) == pairs


def test_a_truncated_segment_yields_its_complete_pairs_only() -> None:
    payload = encode_pairs({"a": b"1", "b": b"22"})
    assert list(decode_pairs(payload[:-1])) == [("a", b"1")]


def test_segments_are_read_back_from_a_given_time_and_expire_whole() -> None:
    store = InMemoryStore()
    log = SegmentLog(store, "dedupe/0")
    log.append(b"first", at_ms=1_000)
    log.append(b"second", at_ms=2_000)
    log.append(b"third", at_ms=3_000)

    reopened = SegmentLog(store, "dedupe/0")  # a restarted instance
    assert list(reopened.read(since_ms=2_000)) == [b"second", b"third"]
    assert reopened.expire(before_ms=2_500) == 2
    assert list(SegmentLog(store, "dedupe/0").read(since_ms=0)) == [b"third"]
    assert len(store.values) == 2  # the index and one segment


def test_periodic_segments_write_at_most_once_per_interval() -> None:
    store = InMemoryStore()
    segments = PeriodicSegments(SegmentLog(store, "s/0"), interval_ms=1_000, retain_ms=10_000)
    segments.record("k1", b"v1")
    assert segments.maybe_flush(now_ms=5_000)
    segments.record("k2", b"v2")
    assert not segments.maybe_flush(now_ms=5_500)
    segments.record("k2", b"v3")  # a later change of the same key replaces the earlier
    assert segments.maybe_flush(now_ms=6_000)
    assert list(replay([SegmentLog(store, "s/0")], since_ms=0)) == [("k1", b"v1"), ("k2", b"v3")]


def test_a_restarted_dedupe_window_drops_repeats_it_replayed() -> None:
    store = InMemoryStore()
    before = DedupeWindow(DedupeConfig(window_ms=60_000))
    segments = PeriodicSegments(SegmentLog(store, "dedupe/0"), 1_000, 60_000)
    decision = before.check("e1", now_ms=10_000, delivery_id=b"m1")
    assert decision.first_seen_ms is not None
    segments.record("e1", encode_sighting(Sighting(decision.first_seen_ms, b"m1")))
    segments.maybe_flush(now_ms=10_000)

    after = DedupeWindow(DedupeConfig(window_ms=60_000))
    for event_id, raw in replay([SegmentLog(store, "dedupe/0")], since_ms=0):
        sighting = decode_sighting(raw)
        assert sighting is not None
        after.preload(event_id, sighting)

    assert after.check("e1", now_ms=20_000, delivery_id=b"m2").reason is DedupeReason.DUPLICATE
    # the message that first carried it, redelivered, still goes through
    assert after.check("e1", now_ms=20_000, delivery_id=b"m1").reason is DedupeReason.REDELIVERY
