"""Fuzzing the pipeline Function itself with a stand-in context and a stand-in sink.

The pure-logic fuzzing (test_stream_decoding_fuzz) cannot see what a Function hands to the
runtime: message properties, partition keys, event times. The stand-in context builds every
published message with the Pulsar client's own `_pulsar.MessageBuilder`, as
``Producer.send_async`` does, so a value the client refuses (an event time beyond uint64, a
property that is not text) raises here as it would in the worker — where it means a nack and
the same message redelivered for ever.

Every payload must end in exactly one way: handed to the sink (which commits and then
acknowledges it), dead-lettered with a reason, or dropped as a repeat and acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import _pulsar
import pulsar
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions import runtime
from functions.pipeline import Pipeline
from magnetar.personalization.records import EnrichedEvent
from magnetar.v1 import events_pb2
from tests.fuzz.strategies import NOW_MS, events, near_valid

DLQ = "persistent://fuzz/events/dlq"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@dataclass
class FakeMessageId:
    value: bytes

    def serialize(self) -> bytes:
        return self.value


@dataclass
class FakeMessage:
    published_ms: int
    redeliveries: int = 0

    def publish_timestamp(self) -> int:
        return self.published_ms

    def redelivery_count(self) -> int:
        return self.redeliveries


@dataclass
class FakeContext:
    """The parts of the Python runtime's context the Functions use."""

    config: dict[str, Any]
    key: str = "k"
    sequence: int = 0
    properties: dict[str, str] = field(default_factory=dict)
    published: list[tuple[str, bytes, dict[str, Any]]] = field(default_factory=list)
    acked: list[Any] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    message: FakeMessage = field(default_factory=lambda: FakeMessage(NOW_MS))

    def deliver(self, sequence: int) -> None:
        self.sequence = sequence

    def get_user_config_map(self) -> dict[str, Any]:
        return self.config

    def get_partition_key(self) -> str:
        return self.key

    def get_message_id(self) -> FakeMessageId:
        return FakeMessageId(self.sequence.to_bytes(8, "big"))

    def get_current_message_topic_name(self) -> str:
        return "persistent://fuzz/events/in-partition-0"

    def get_message_eventtime(self) -> int:
        return 0

    def get_message_properties(self) -> dict[str, str]:
        return self.properties

    def get_instance_id(self) -> int:
        return 0

    def record_metric(self, name: str, value: float) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + value

    def ack(self, message_id: Any, topic: str) -> None:
        self.acked.append(message_id)

    def publish(
        self,
        topic: str,
        payload: bytes,
        serde_class_name: str = "",
        callback: Callable[[Any, Any], None] | None = None,
        message_conf: dict[str, Any] | None = None,
    ) -> None:
        conf = dict(message_conf or {})
        # What Producer.send_async does with message_conf, minus the network.
        builder = _pulsar.MessageBuilder()
        builder.content(bytes(payload))
        for name, value in (conf.get("properties") or {}).items():
            builder.property(name, value)
        if conf.get("partition_key"):
            builder.partition_key(conf["partition_key"])
        if conf.get("event_timestamp"):
            builder.event_timestamp(conf["event_timestamp"])
        builder.build()
        self.published.append((topic, bytes(payload), conf))
        if callback is not None:
            callback(pulsar.Result.Ok, None)


@dataclass
class CountingSink:
    """Stands in for the batch committer: "commits" at once, then acknowledges."""

    context: FakeContext
    counted: list[EnrichedEvent] = field(default_factory=list)

    def add(
        self,
        event: EnrichedEvent,
        delivery: tuple[Any, str],
        accepted_at: int,
        *,
        payload: bytes = b"",
        key: str = "",
    ) -> None:
        assert event.tenant_id == "fuzz" and event.event_id
        self.counted.append(event)
        self.context.ack(delivery[0], delivery[1])


CONFIG = {"tenant_id": "fuzz", "dlq_topic": DLQ, "durable_state": "false", "window_ms": 60_000}


def run_once(function: Any, context: FakeContext, sink: CountingSink, payload: bytes) -> str:
    """Process one delivery; its fate: 'counted', 'dead-lettered' or 'dropped'."""
    published = len(context.published)
    acked = len(context.acked)
    counted = len(sink.counted)
    context.deliver(next(SEQUENCE))
    function.process(payload, context)
    new = context.published[published:]
    assert len(new) <= 1, new
    assert len(context.acked) == acked + 1, "every delivery is acknowledged exactly once"
    if len(sink.counted) > counted:
        assert not new and len(sink.counted) == counted + 1
        return "counted"
    if not new:
        return "dropped"
    topic, _, conf = new[0]
    assert topic == DLQ
    assert conf["properties"][runtime.REASON_PROPERTY], conf
    return "dead-lettered"


CONTEXT = FakeContext(CONFIG)
SINK = CountingSink(CONTEXT)
PIPELINE = Pipeline(sink=SINK)
SEQUENCE = iter(range(10**9))

payloads = st.one_of(
    st.binary(max_size=1024),
    events().map(lambda e: e.SerializeToString()),
    near_valid(events().map(lambda e: e.SerializeToString())),
)


def _far_future() -> bytes:
    event = events_pb2.Event(event_id="far", user_id="u", item_id="i", type=1)  # type: ignore[arg-type]
    event.occurred_at.seconds = 2**63 - 1
    return event.SerializeToString()


@FUZZ
@given(payloads)
@example(_far_future())
def test_the_pipeline_counts_drops_or_dead_letters_any_payload(payload: bytes) -> None:
    fate = run_once(PIPELINE, CONTEXT, SINK, payload)
    if fate == "dropped":
        # Only a repeat is dropped: delivering the same payload again (a new message) is too.
        assert run_once(PIPELINE, CONTEXT, SINK, payload) == "dropped"
    if fate == "counted":
        # The same event_id again, in a new message, is a client repeat.
        assert run_once(PIPELINE, CONTEXT, SINK, payload) == "dropped"
