"""A message whose processing raises is redelivered a bounded number of times, then goes to
the DLQ with the exception; a setup failure is never dead-lettered."""

from __future__ import annotations

from typing import Any

import pytest

from functions import runtime
from functions.pipeline import MAX_ATTEMPTS, Pipeline
from magnetar.v1 import events_pb2
from tests.fuzz.strategies import NOW_MS
from tests.fuzz.test_function_classes_fuzz import CONFIG, DLQ, FakeContext


class BrokenSink:
    def add(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the sink is broken")


def _payload() -> bytes:
    event = events_pb2.Event(event_id="e1", user_id="u1", item_id="i1")
    event.type = events_pb2.EVENT_TYPE_VIEW
    event.occurred_at.FromMilliseconds(NOW_MS)
    return event.SerializeToString()


def test_a_failing_event_is_retried_then_dead_lettered_with_the_exception() -> None:
    context = FakeContext(dict(CONFIG))
    pipeline = Pipeline(sink=BrokenSink())
    for attempt in range(1, MAX_ATTEMPTS):
        context.message.redeliveries = attempt - 1
        with pytest.raises(RuntimeError):
            pipeline.process(_payload(), context)
        assert context.published == [] and context.acked == []
    context.message.redeliveries = MAX_ATTEMPTS - 1
    pipeline.process(_payload(), context)
    [(topic, _, conf)] = context.published
    assert topic == DLQ
    assert conf["properties"][runtime.REASON_PROPERTY] == "PROCESSING_FAILED"
    assert "the sink is broken" in conf["properties"][runtime.DETAIL_PROPERTY]
    assert len(context.acked) == 1


def test_a_setup_failure_is_raised_on_every_attempt() -> None:
    context = FakeContext({"dlq_topic": DLQ})  # no tenant_id: the deployment is wrong
    context.message.redeliveries = 100
    with pytest.raises(KeyError):
        Pipeline(sink=BrokenSink()).process(_payload(), context)
    assert context.published == []
