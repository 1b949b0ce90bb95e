"""Pulsar Function `dedupe`: drop client repeats of an event_id inside the window.

Deployed per tenant on ``persistent://<tenant>/events/raw`` with ``retainKeyOrdering`` (a
Key_Shared subscription: one user's events, hence an event's repeats, meet one instance) and
``autoAck: false``; forwards first sightings to ``events/deduped`` keyed by user. The
decision and its durable record live in `functions.logic.dedupe_window`; this class decodes,
asks, forwards or acknowledges. Undecodable payloads go to the DLQ with a reason.
"""

from __future__ import annotations

from typing import Any

from pulsar import Function

from functions import runtime, wire
from functions.logic.dedupe_window import DEFAULT_WINDOW_MS, DedupeConfig, DedupeWindow
from functions.logic.state_port import FunctionContextStore, InMemoryStore

STAGE = "dedupe"


class Dedupe(Function):  # type: ignore[misc]
    def __init__(self) -> None:
        self._window: DedupeWindow | None = None
        self._output = ""
        self._dlq = ""

    def _setup(self, context: Any) -> DedupeWindow:
        config = runtime.user_config(context)
        self._output = str(config["output_topic"])
        self._dlq = str(config["dlq_topic"])
        window = DedupeConfig(window_ms=int(config.get("window_ms", DEFAULT_WINDOW_MS)))
        if str(config.get("durable_state", "true")).lower() == "true":
            store: Any = FunctionContextStore(context)
        else:
            store = InMemoryStore()
        return DedupeWindow(window, store=store, counters=store)

    def process(self, input: bytes, context: Any) -> None:
        if self._window is None:
            self._window = self._setup(context)
        key = context.get_partition_key() or ""
        try:
            event = wire.decode_event(input)
        except wire.UndecodablePayload as exc:
            runtime.dead_letter(
                context,
                self._dlq,
                input,
                stage=STAGE,
                reason="UNDECODABLE",
                detail=str(exc),
                key=key,
            )
            return
        message_id = context.get_message_id()
        decision = self._window.check(event.event_id, runtime.now_ms(), message_id.serialize())
        if decision.drop:
            context.record_metric("duplicates_dropped", 1)
            runtime.ack(context, runtime.current_delivery(context))
            return
        runtime.forward(
            context,
            self._output,
            input,
            key=key or wire.subject_of(event),
            event_time_ms=wire.timestamp_ms(event.occurred_at),
            accepted_at=runtime.accepted_at_ms(context),
        )
