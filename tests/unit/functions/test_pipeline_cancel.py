"""A cancellation travels the wire (EVENT_TYPE_CANCEL) and the pipeline counts it as the
offline replay does: it takes back what the purchase added."""

from __future__ import annotations

from functions.pipeline import Pipeline
from magnetar.personalization import records
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.settings import SignalSettings
from magnetar.v1 import events_pb2
from magnetar.workload.wire import to_wire_event
from tests.fuzz.strategies import NOW_MS
from tests.fuzz.test_function_classes_fuzz import CONFIG, CountingSink, FakeContext, run_once


def _payload(event_id: str, kind: int, at_ms: int) -> bytes:
    event = events_pb2.Event(event_id=event_id, user_id="u1", item_id="mug", quantity=1)
    event.type = kind  # type: ignore[assignment]
    event.occurred_at.FromMilliseconds(at_ms)
    return event.SerializeToString()


def test_a_cancel_from_the_wire_takes_back_the_purchase_in_state() -> None:
    context = FakeContext(dict(CONFIG))
    sink = CountingSink(context)
    pipeline = Pipeline(sink=sink)
    bought = _payload("p1", events_pb2.EVENT_TYPE_PURCHASE, NOW_MS - 2_000)
    returned = _payload("c1", events_pb2.EVENT_TYPE_CANCEL, NOW_MS - 1_000)
    assert run_once(pipeline, context, sink, bought) == "counted"
    assert run_once(pipeline, context, sink, returned) == "counted"
    assert [e.type for e in sink.counted] == [records.PURCHASE, records.CANCEL]

    settings = SignalSettings()
    state = MemoryState(settings)
    state.apply(fold_events(sink.counted, settings))
    assert state.purchased_items("fuzz", "u1") == frozenset()
    assert state.user_item_affinities("fuzz", "u1", NOW_MS, 10) == []


def test_the_workload_sends_cancellations_as_cancel_events() -> None:
    record = records.EnrichedEvent("c1", "t", "u1", "s", records.CANCEL, "mug", NOW_MS)
    wire = to_wire_event(record)
    assert wire is not None and wire.type == events_pb2.EVENT_TYPE_CANCEL
