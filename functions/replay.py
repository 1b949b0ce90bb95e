"""Retained events replayed through the pipeline's own steps, into a state of one's choice.

`Replay.feed` hands a message read from the tenant's raw or import topic (a `pulsar.Message`
from a Reader) to the pipeline Function's `process` — decode, erasure markers, the dedupe
window, validation by topic, sessions, device, catalog join — through `ReplayContext`, a
stand-in for the Function context, so a replayed event meets the decisions a live one met.
The differences are on purpose: dead letters are counted by reason, not published (the live
run put them in the DLQ already), and an event whose processing raises is dead-lettered at
once, as the live pipeline does at its last delivery.

Enriched events are committed in batches of `batch_size` by `commit` (a rebuild's
`magnetar.db.shadow_state.ShadowState.commit`, the pipeline's `commit_batch`); a batch
PostgreSQL refuses for its data is halved down to the event, which is counted as refused,
as the live batch commit dead-letters it. `flush` commits what is buffered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulsar

from functions import runtime
from functions.batch_commit import DLQ_STEP, PERMANENT_ERRORS
from functions.logic.catalog_view import CatalogView
from functions.pipeline import MAX_ATTEMPTS, Pipeline
from magnetar.db.state_writer import BatchOutcome
from magnetar.personalization.records import EnrichedEvent

Commit = Callable[[Sequence[EnrichedEvent], Mapping[str, int], int], BatchOutcome]
STATE_REFUSED = f"STATE_REFUSED ({DLQ_STEP})"


@dataclass
class ReplayCounts:
    read: int = 0
    counted: int = 0
    # Counted before (by the ledger the commit writes to): repeats and redeliveries.
    already_counted: int = 0
    # Dropped by the dedupe window before enrich, as client repeats.
    repeats: int = 0
    # Dead letters by reason (the DLQ's `dlq_reason`), and events PostgreSQL refused.
    refused: Counter[str] = field(default_factory=Counter)


class _Delivery:
    """What the pipeline reads of the runtime's current message beyond the context."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def publish_timestamp(self) -> int:
        return int(self._message.publish_timestamp())

    def redelivery_count(self) -> int:
        # As if this were the last delivery: a failure is dead-lettered, not retried.
        return MAX_ATTEMPTS - 1


class ReplayContext:
    """The Function context `Pipeline.process` uses, over one read message at a time."""

    def __init__(self, config: Mapping[str, Any], counts: ReplayCounts) -> None:
        self._config = dict(config)
        self._counts = counts
        self._current: Any = None
        self.message: _Delivery | None = None

    def set_current(self, message: Any) -> None:
        self._current = message
        self.message = _Delivery(message)

    def get_user_config_map(self) -> dict[str, Any]:
        return self._config

    def get_instance_id(self) -> int:
        return 0

    def get_partition_key(self) -> str:
        return str(self._current.partition_key())

    def get_message_id(self) -> Any:
        return self._current.message_id()

    def get_current_message_topic_name(self) -> str:
        return str(self._current.topic_name())

    def get_message_properties(self) -> dict[str, str]:
        return dict(self._current.properties())

    def record_metric(self, name: str, value: float) -> None:
        if name == "duplicates_dropped":
            self._counts.repeats += int(value)

    def ack(self, message_id: Any, topic: str) -> None:
        """Nothing to acknowledge: a Reader holds no subscription."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        serde_class_name: str | None = None,
        callback: Callable[[Any, Any], None] | None = None,
        message_conf: Mapping[str, Any] | None = None,
    ) -> None:
        """The pipeline publishes only dead letters: count the reason, as if stored."""
        properties = (message_conf or {}).get("properties", {})
        self._counts.refused[str(properties.get(runtime.REASON_PROPERTY, "UNKNOWN"))] += 1
        if callback is not None:
            callback(pulsar.Result.Ok, None)


class Replay:
    def __init__(
        self,
        tenant_id: str,
        dlq_topic: str,
        catalog: CatalogView,
        commit: Commit,
        *,
        batch_size: int = 2_000,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.counts = ReplayCounts()
        self._commit = commit
        self._batch_size = batch_size
        self._now_ms = now_ms
        self._events: list[EnrichedEvent] = []
        self._accepted: list[int] = []
        # Function state is the live instances' own: the replay starts its windows empty.
        config = {"tenant_id": tenant_id, "dlq_topic": dlq_topic, "durable_state": "false"}
        self._context = ReplayContext(config, self.counts)
        self._pipeline = Pipeline(sink=self, catalog=catalog)

    def feed(self, message: Any) -> None:
        """Process one retained message; commits a batch when `batch_size` are buffered."""
        self.counts.read += 1
        self._context.set_current(message)
        self._pipeline.process(message.data(), self._context)
        if len(self._events) >= self._batch_size:
            self.flush()

    # The pipeline's `EventSink`.
    def add(
        self,
        event: EnrichedEvent,
        delivery: tuple[Any, str],
        accepted_at: int,
        *,
        payload: bytes = b"",
        key: str = "",
    ) -> None:
        self._events.append(event)
        self._accepted.append(accepted_at)

    def flush(self) -> None:
        parts = [(self._events, self._accepted)]
        self._events, self._accepted = [], []
        while parts:
            events, accepted = parts.pop()
            if not events:
                continue
            try:
                outcome = self._commit(
                    events,
                    {e.event_id: a for e, a in zip(events, accepted, strict=True)},
                    self._now_ms(),
                )
            except PERMANENT_ERRORS:
                if len(events) == 1:
                    self.counts.refused[STATE_REFUSED] += 1
                    continue
                half = len(events) // 2
                parts += [(events[half:], accepted[half:]), (events[:half], accepted[:half])]
                continue
            self.counts.counted += outcome.counted
            self.counts.already_counted += outcome.already_counted
