"""Pulsar Function `pipeline`: dedupe → enrich → materialize in one instance per tenant.

Each message of ``events/raw`` and ``events/import`` is decoded, dropped as a repeat, enriched
and handed to the batch committer, or dead-lettered with its reason; it is acknowledged only
once what it became is stored. The window and sessions are appended to function state as
segments and replayed when an instance starts; the ledger makes counting exact
(docs/pipeline.md)."""

from __future__ import annotations

from typing import Any, Protocol

from pulsar import Function

from functions import runtime, wire
from functions.batch_commit import BatchCommitter, MaterializeConfig
from functions.catalog_follower import CatalogFollower
from functions.logic.catalog_view import CatalogView
from functions.logic.dedupe_window import (
    DEFAULT_WINDOW_MS,
    DedupeConfig,
    DedupeReason,
    DedupeWindow,
    Sighting,
    decode_sighting,
    encode_sighting,
)
from functions.logic.devices import DeviceParser
from functions.logic.enrichment import DeadLetter, enrich
from functions.logic.segment_log import PeriodicSegments, replay
from functions.logic.sessions import SessionTracker
from functions.logic.validation import policy_for_topic
from magnetar.personalization.records import EnrichedEvent as StateEvent

# The step that refused a dead-lettered event, in its `dlq_stage` property.
DECODE_STEP = "decode"
ENRICH_STEP = "enrich"
STAGE = "pipeline"
# Deliveries of an input whose processing raises before it goes to the DLQ.
MAX_ATTEMPTS = 5
FIRST_SIGHTINGS = (DedupeReason.FIRST_SEEN, DedupeReason.OUTSIDE_WINDOW)
# How often first sightings and changed sessions are appended to function state.
SNAPSHOT_INTERVAL_MS = 1_000
# Sessions older than this cannot take new events (30 min gap + the 15 min lateness
# threshold), so older session segments are not worth replaying.
SESSION_MEMORY_MS = 60 * 60 * 1000
# Segment-log prefixes in the function's state: one per kind of state.
DEDUPE_LOG = "dedupe"
SESSIONS_LOG = "sessions"


class EventSink(Protocol):
    """Where counted events go: `BatchCommitter` (PostgreSQL), or a stand-in in tests."""

    def add(
        self,
        event: StateEvent,
        delivery: tuple[Any, str],
        accepted_at: int,
        *,
        payload: bytes = b"",
        key: str = "",
    ) -> None: ...


class Pipeline(Function):  # type: ignore[misc]
    def __init__(self, sink: EventSink | None = None, catalog: CatalogView | None = None) -> None:
        """`sink` and `catalog` stand in for the batch committer and the followed catalog
        topic: tests, and a rebuild's replay (`functions.replay`), which loads the catalog
        itself and leaves ``catalog_topic`` out of the user config."""
        self._ready = False
        self._sink = sink
        self._tenant = ""
        self._dlq = ""
        self._window = DedupeWindow(DedupeConfig())
        self._sessions = SessionTracker()
        self._catalog = CatalogView()
        self._devices = DeviceParser()
        self._sightings: PeriodicSegments | None = None
        self._session_log: PeriodicSegments | None = None
        if catalog is not None:
            self._catalog = catalog

    def _setup(self, context: Any) -> None:
        config = runtime.user_config(context)
        self._tenant = str(config["tenant_id"])
        self._dlq = str(config["dlq_topic"])
        window_ms = int(config.get("window_ms", DEFAULT_WINDOW_MS))
        self._window = DedupeWindow(DedupeConfig(window_ms=window_ms))
        if runtime.durable_state(context):
            now = runtime.now_ms()
            own, everyone = runtime.segment_logs(context, DEDUPE_LOG)
            for event_id, raw in replay(everyone, now - window_ms):
                sighting = decode_sighting(raw)
                if sighting is not None:
                    self._window.preload(event_id, sighting)
            self._sightings = PeriodicSegments(own, SNAPSHOT_INTERVAL_MS, window_ms)
            own, everyone = runtime.segment_logs(context, SESSIONS_LOG)
            for key, raw in replay(everyone, now - SESSION_MEMORY_MS):
                self._sessions.restore(key, raw)
            self._session_log = PeriodicSegments(own, SNAPSHOT_INTERVAL_MS, SESSION_MEMORY_MS)
        catalog_topic = config.get("catalog_topic")
        if catalog_topic:
            CatalogFollower(self._catalog).follow(runtime.own_client(), str(catalog_topic))
        if self._sink is None:
            self._sink = BatchCommitter(MaterializeConfig.from_user_config(dict(config)), context)
        self._ready = True

    def process(self, input: bytes, context: Any) -> None:
        if not self._ready:
            # A setup failure (configuration, state storage, catalog) is the deployment's, not
            # the event's: raised, so the runtime redelivers until it is fixed.
            self._setup(context)
        try:
            self._process(input, context)
        except Exception as error:
            # Raised: the runtime nacks and the broker redelivers, a few times; then the event
            # goes to the DLQ with the exception, so one poison message cannot loop for ever.
            if runtime.delivery_attempts(context) < MAX_ATTEMPTS:
                raise
            runtime.dead_letter(
                context,
                self._dlq,
                input,
                stage=STAGE,
                reason="PROCESSING_FAILED",
                detail=f"{type(error).__name__}: {error}",
                key=context.get_partition_key() or "",
            )

    def _process(self, input: bytes, context: Any) -> None:
        assert self._sink is not None
        message = runtime.decode_or_dead_letter(
            context, input, wire.decode_event, dlq=self._dlq, stage=DECODE_STEP
        )
        if message is None:
            return
        if wire.is_erasure_marker(message):
            # DeleteUser: the subject's sessions go; nothing is counted.
            stream_event = wire.to_stream_event(message, self._tenant)
            self._sessions.forget(self._tenant, stream_event.user_key)
            context.record_metric("subjects_erased", 1)
            runtime.ack(context, runtime.current_delivery(context))
            self._save_state(runtime.now_ms())
            return
        key = context.get_partition_key() or wire.subject_of(message)
        now = runtime.now_ms()
        message_id = context.get_message_id().serialize()
        decision = self._window.check(message.event_id, now, message_id)
        if decision.drop:
            context.record_metric("duplicates_dropped", 1)
            runtime.ack(context, runtime.current_delivery(context))
            return
        first_seen = decision.first_seen_ms
        if self._sightings and decision.reason in FIRST_SIGHTINGS and first_seen is not None:
            sighting = Sighting(first_seen, message_id)
            self._sightings.record(message.event_id, encode_sighting(sighting))
        accepted_at = runtime.accepted_at_ms(context)
        outcome = enrich(
            wire.to_stream_event(message, self._tenant),
            accepted_at,
            self._sessions,
            self._catalog,
            self._devices,
            # Imported history (the import topic) may be of any age; live events may not.
            policy_for_topic(context.get_current_message_topic_name()),
        )
        if isinstance(outcome, DeadLetter):
            runtime.dead_letter(
                context,
                self._dlq,
                input,
                stage=ENRICH_STEP,
                reason=outcome.reason.value,
                detail=outcome.detail,
                key=key,
                extra=outcome.properties(),
            )
        else:
            if outcome.late:
                context.record_metric("events_late", 1)
            self._sink.add(
                wire.state_event_of(outcome),
                runtime.current_delivery(context),
                accepted_at,
                payload=input,
                key=key,
            )
        self._save_state(now)

    def _save_state(self, now: int) -> None:
        if self._sightings is not None:
            self._sightings.maybe_flush(now)
        changed = self._sessions.take_dirty()
        if self._session_log is not None:
            for user, spans in changed.items():
                self._session_log.record(user, spans)
            self._session_log.maybe_flush(now)
