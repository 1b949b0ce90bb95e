"""Pulsar Function `dedupe`: drop client repeats of an event_id inside the window.

Deployed per tenant on ``persistent://<tenant>/events/raw`` with ``retainKeyOrdering`` (a
Key_Shared subscription: one user's events, hence an event's repeats, meet one instance) and
``autoAck: false``; forwards first sightings to ``events/deduped`` keyed by user. The
decision lives in `functions.logic.dedupe_window` (an exact, bounded in-memory window); first
sightings are appended to function state about once a second as segments
(`functions.logic.segment_log`) and replayed when an instance starts, so repeats are still
dropped after a restart or redeploy. Undecodable payloads go to the DLQ with a reason.
"""

from __future__ import annotations

from typing import Any

from pulsar import Function

from functions import runtime, wire
from functions.logic.dedupe_window import (
    DEFAULT_WINDOW_MS,
    DedupeConfig,
    DedupeReason,
    DedupeWindow,
    Sighting,
    decode_sighting,
    encode_sighting,
)
from functions.logic.segment_log import PeriodicSegments, replay

FIRST_SIGHTINGS = (DedupeReason.FIRST_SEEN, DedupeReason.OUTSIDE_WINDOW)

STAGE = "dedupe"


# How often first sightings are appended to function state (see `segment_log`).
SNAPSHOT_INTERVAL_MS = 1_000


class Dedupe(Function):  # type: ignore[misc]
    def __init__(self) -> None:
        self._window: DedupeWindow | None = None
        self._segments: PeriodicSegments | None = None
        self._output = ""
        self._dlq = ""

    def _setup(self, context: Any) -> DedupeWindow:
        config = runtime.user_config(context)
        self._output = str(config["output_topic"])
        self._dlq = str(config["dlq_topic"])
        window_ms = int(config.get("window_ms", DEFAULT_WINDOW_MS))
        # The window lives in memory; durability comes from the segment log, not from a
        # state write per event (one round trip each would cap the stage at a few hundred
        # events per second).
        window = DedupeWindow(DedupeConfig(window_ms=window_ms))
        if runtime.durable_state(context):
            own, everyone = runtime.segment_logs(context, STAGE)
            now = runtime.now_ms()
            for event_id, raw in replay(everyone, now - window_ms):
                sighting = decode_sighting(raw)
                if sighting is not None:
                    window.preload(event_id, sighting)
            self._segments = PeriodicSegments(own, SNAPSHOT_INTERVAL_MS, window_ms)
        return window

    def process(self, input: bytes, context: Any) -> None:
        if self._window is None:
            self._window = self._setup(context)
        key = context.get_partition_key() or ""
        event = runtime.decode_or_dead_letter(
            context, input, wire.decode_event, dlq=self._dlq, stage=STAGE
        )
        if event is None:
            return
        message_id = context.get_message_id()
        decision = self._window.check(event.event_id, runtime.now_ms(), message_id.serialize())
        if decision.drop:
            context.record_metric("duplicates_dropped", 1)
            runtime.ack(context, runtime.current_delivery(context))
            return
        if self._segments is not None:
            if decision.reason in FIRST_SIGHTINGS and decision.first_seen_ms is not None:
                sighting = Sighting(decision.first_seen_ms, message_id.serialize())
                self._segments.record(event.event_id, encode_sighting(sighting))
            self._segments.maybe_flush(runtime.now_ms())
        runtime.forward(
            context,
            self._output,
            input,
            key=key or wire.subject_of(event),
            event_time_ms=wire.timestamp_ms(event.occurred_at),
            accepted_at=runtime.accepted_at_ms(context),
        )
