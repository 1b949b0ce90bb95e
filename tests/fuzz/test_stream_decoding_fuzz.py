"""Property-based fuzzing of what the Functions do with a payload, without Pulsar.

For any bytes and any well-typed message, the path a payload takes through the pipeline —
``decode_event`` → ``to_stream_event`` → ``enrich`` → ``to_enriched_proto`` → (the wire) →
``decode_enriched`` → ``to_state_event`` — either raises the documented ``UndecodablePayload``
at a decode (the Function dead-letters it as UNDECODABLE), or ends in a ``DeadLetter`` with a
reason, or produces a state event that PostgreSQL can store. Any other exception is a bug:
the runtime would nack the message and redeliver it forever.
"""

from __future__ import annotations

import math
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions import wire
from functions.catalog_follower import decode_catalog_item
from functions.logic.catalog_view import CatalogView
from functions.logic.dedupe_window import DedupeConfig, DedupeWindow
from functions.logic.devices import DeviceParser
from functions.logic.enrichment import DeadLetter, enrich
from functions.logic.sessions import SessionConfig, SessionTracker
from functions.logic.validation import DlqReason
from magnetar.personalization.records import EnrichedEvent as StateEvent
from magnetar.v1 import events_pb2
from tests.fuzz.strategies import (
    NOW_MS,
    catalog_items,
    enriched_events,
    events,
    near_valid,
)

TENANT = "fuzz"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One set of logic objects for the module, as one Function instance keeps them.
DEVICES = DeviceParser(cache_size=64)
SESSIONS = SessionTracker(SessionConfig(max_users=64))
CATALOG = CatalogView()


def assert_storable(event: StateEvent) -> None:
    """What materialize writes must be storable: no NUL in text (PostgreSQL rejects it in
    text and jsonb), finite numbers, times that fit a bigint."""
    for name in ("event_id", "tenant_id", "user_id", "session_id", "type", "item_id"):
        assert "\x00" not in getattr(event, name), name
    for category in event.categories:
        assert "\x00" not in category, "category"
    assert math.isfinite(event.value)
    assert event.price is None or math.isfinite(event.price)
    assert -(2**63) <= event.occurred_at < 2**63
    assert event.event_id and event.user_id


def through_the_pipeline(payload: bytes, accepted_at_ms: int = NOW_MS) -> str:
    """The stages' decisions for one raw payload: 'undecodable', a DLQ reason, or 'counted'."""
    try:
        message = wire.decode_event(payload)
    except wire.UndecodablePayload:
        return "undecodable"
    wire.subject_of(message)
    outcome = enrich(
        wire.to_stream_event(message, TENANT), accepted_at_ms, SESSIONS, CATALOG, DEVICES
    )
    if isinstance(outcome, DeadLetter):
        assert isinstance(outcome.reason, DlqReason)
        return outcome.reason.value
    wire_form = wire.to_enriched_proto(outcome, message).SerializeToString()
    state = wire.to_state_event(wire.decode_enriched(wire_form))
    # The pipeline counts the same record without the wire form.
    assert wire.state_event_of(outcome) == state
    assert state.event_id == message.event_id
    assert state.tenant_id == TENANT
    assert_storable(state)
    return "counted"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_undecodable_dead_letters_or_processed(payload: bytes) -> None:
    through_the_pipeline(payload)


def _valid_event(**fields: str) -> events_pb2.Event:
    event = events_pb2.Event(
        event_id="e-1", user_id="u-1", item_id="sku-1", type=events_pb2.EVENT_TYPE_VIEW
    )
    event.occurred_at.FromMilliseconds(NOW_MS)
    for name, value in fields.items():
        setattr(event, name, value)
    return event


@FUZZ
@given(events())
@example(_valid_event(user_id="u\x00"))
@example(_valid_event(item_id="\x00"))
@example(_valid_event(session_id="s\x00"))
def test_any_well_typed_event_is_counted_or_dead_lettered_with_a_reason(
    event: events_pb2.Event,
) -> None:
    through_the_pipeline(event.SerializeToString())


@FUZZ
@given(near_valid(events().map(lambda e: e.SerializeToString())))
def test_near_valid_encodings_never_crash_a_stage(payload: bytes) -> None:
    through_the_pipeline(payload)


@FUZZ
@given(st.one_of(st.binary(max_size=2048), enriched_events().map(lambda m: m.SerializeToString())))
def test_materialize_maps_any_enriched_payload_or_rejects_it_as_undecodable(
    payload: bytes,
) -> None:
    try:
        message = wire.decode_enriched(payload)
    except wire.UndecodablePayload:
        return
    wire.to_state_event(message)


@FUZZ
@given(st.one_of(st.binary(max_size=1024), catalog_items().map(lambda m: m.SerializeToString())))
def test_catalog_records_of_any_shape_keep_the_view_usable(payload: bytes) -> None:
    view = CatalogView()
    try:
        view.apply_message("sku-1", payload, decode_catalog_item)
    except Exception:
        # The listener skips a record it cannot read; the view must stay as it was.
        assert view.join("sku-1") == CatalogView().join("sku-1")
        return
    snapshot = view.join("sku-1")
    event = events_pb2.Event(
        event_id="e-1", user_id="u-1", item_id="sku-1", type=events_pb2.EVENT_TYPE_VIEW
    )
    event.occurred_at.FromMilliseconds(NOW_MS)
    catalog = CatalogView()
    catalog.apply_message("sku-1", payload, decode_catalog_item)
    outcome = enrich(wire.to_stream_event(event, TENANT), NOW_MS, SESSIONS, catalog, DEVICES)
    assert not isinstance(outcome, DeadLetter)
    assert outcome.item == snapshot
    state = wire.to_state_event(
        wire.decode_enriched(wire.to_enriched_proto(outcome, event).SerializeToString())
    )
    assert_storable(state)


@FUZZ
@given(st.integers(-(2**31), 2**31 - 1))
def test_every_enum_number_has_a_name(value: int) -> None:
    assert wire.event_type_name(value)


def test_memory_stays_bounded_over_a_long_random_stream() -> None:
    """Caches hold at most their bound, and a long stream of distinct users, ids and user
    agents leaves no growth behind once those bounds are reached."""
    rng = random.Random(9)
    devices = DeviceParser(cache_size=50)
    sessions = SessionTracker(SessionConfig(max_users=100))
    window = DedupeWindow(DedupeConfig(max_cached_ids=100))
    catalog = CatalogView()

    def one(n: int) -> None:
        event = events_pb2.Event(
            event_id=f"e-{n}",
            user_id=f"u-{rng.randrange(10**9)}",
            item_id=f"i-{n % 50}",
            type=events_pb2.EVENT_TYPE_VIEW,
        )
        # A new user agent every 10th event: the parser's cache keeps turning over.
        event.context.user_agent = (
            f"Mozilla/5.0 (X11; Linux x86_64; rv:{n // 10}.0) Firefox/{n // 10}"
        )
        event.occurred_at.FromMilliseconds(NOW_MS)
        message = wire.decode_event(event.SerializeToString())
        window.check(message.event_id, NOW_MS + n)
        outcome = enrich(wire.to_stream_event(message, TENANT), NOW_MS, sessions, catalog, devices)
        assert not isinstance(outcome, DeadLetter)
        wire.to_enriched_proto(outcome, message).SerializeToString()
        sessions.take_dirty()  # as the pipeline does after every event

    for n in range(1_000):
        one(n)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1_000, 4_000):
            one(n)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(devices) <= 50 and len(sessions) <= 100 and len(window) <= 100
    # 3,000 more events through full caches: nothing retained beyond noise.
    assert grown < 256 * 1024, f"{grown} bytes retained over 3,000 events"


@pytest.mark.parametrize("size", [1 << 20, 4 << 20])
def test_large_payloads_decode_in_memory_proportional_to_their_size(size: int) -> None:
    event = events_pb2.Event(
        event_id="big", user_id="u", item_id="i", type=events_pb2.EVENT_TYPE_VIEW
    )
    event.attributes["blob"] = "x" * size
    payload = event.SerializeToString()
    tracemalloc.start()
    try:
        through_the_pipeline(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * size, f"peak {peak} bytes for a {size}-byte payload"
