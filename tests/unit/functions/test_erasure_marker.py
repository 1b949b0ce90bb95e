"""DeleteUser's marker makes the pipeline forget the subject's sessions: the subject's next
event opens a new session, also after the instance restarts and replays its state."""

from __future__ import annotations

from functions.logic.sessions import SessionTracker
from functions.pipeline import Pipeline
from magnetar.raw_events import erasure_marker
from magnetar.v1 import events_pb2
from tests.fuzz.strategies import NOW_MS
from tests.fuzz.test_function_classes_fuzz import CONFIG, CountingSink, FakeContext


def _view(event_id: str, at_ms: int) -> bytes:
    event = events_pb2.Event(event_id=event_id, user_id="u1", item_id="i1")
    event.type = events_pb2.EVENT_TYPE_VIEW
    event.occurred_at.FromMilliseconds(at_ms)
    return event.SerializeToString()


def test_after_the_marker_the_subjects_next_event_opens_a_new_session() -> None:
    context = FakeContext(dict(CONFIG))
    sink = CountingSink(context)
    pipeline = Pipeline(sink=sink)
    for n, payload in enumerate(
        [
            _view("e1", NOW_MS - 60_000),
            erasure_marker(user_id="u1").SerializeToString(),
            _view("e2", NOW_MS),  # one minute later: the same session, had it not been erased
        ]
    ):
        context.deliver(n)
        pipeline.process(payload, context)
    before, after = sink.counted
    assert before.session_id != after.session_id
    assert len(context.acked) == 3 and context.published == []  # the marker is not counted


def test_a_forgotten_subject_stays_forgotten_through_a_replay() -> None:
    tracker = SessionTracker()
    first = tracker.assign("t", "u:u1", 1_000)
    tracker.forget("t", "u:u1")
    saved = tracker.take_dirty()

    replayed = SessionTracker()
    for key, raw in saved.items():
        replayed.restore(key, raw)
    assert replayed.assign("t", "u:u1", 2_000).session_id != first.session_id
