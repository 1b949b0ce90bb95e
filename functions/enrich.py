"""Pulsar Function `enrich`: validate, sessionize, parse the device, join the catalog.

Deployed per tenant on ``events/deduped`` (Key_Shared: one user's events on one instance, so
sessions hold) with ``autoAck: false``; publishes an ``EnrichedEvent`` to ``events/enriched``
keyed by user, or routes the original payload to ``events/dlq`` with the reason in message
properties. A poison message never blocks the subscription: whatever cannot be decoded or
validated is dead-lettered and acknowledged.

The catalog is read as a table view of the compacted ``catalog/items`` topic (latest record
per item key), kept current by a reader thread, so an upsert shows up in joins within
moments.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pulsar
from pulsar import Function

from functions import runtime, wire
from functions.logic.catalog_view import CatalogItem, CatalogView
from functions.logic.devices import DeviceParser
from functions.logic.enrichment import DeadLetter, enrich
from functions.logic.segment_log import PeriodicSegments, replay
from functions.logic.sessions import SessionConfig, SessionTracker
from magnetar.v1 import catalog_service_pb2

STAGE = "enrich"
SNAPSHOT_INTERVAL_MS = 1_000
# Sessions older than this cannot take new events (30 min gap + the 15 min lateness
# threshold), so older segments are not worth replaying.
SESSION_MEMORY_MS = 60 * 60 * 1000
log = logging.getLogger(__name__)


def decode_catalog_item(payload: bytes) -> CatalogItem:
    item = catalog_service_pb2.Item()
    item.ParseFromString(payload)
    return CatalogItem(
        item_id=item.item_id,
        title=item.title,
        categories=tuple(item.categories),
        # proto3 has no presence for doubles: a zero price means "not given".
        price=item.price or None,
    )


class Enrich(Function):  # type: ignore[misc]
    def __init__(self) -> None:
        self._ready = False
        self._tenant = ""
        self._output = ""
        self._dlq = ""
        self._catalog = CatalogView()
        self._devices = DeviceParser()
        self._sessions: SessionTracker | None = None
        self._segments: PeriodicSegments | None = None
        self._catalog_reader: Any = None

    def _setup(self, context: Any) -> None:
        config = runtime.user_config(context)
        self._tenant = str(config["tenant_id"])
        self._output = str(config["output_topic"])
        self._dlq = str(config["dlq_topic"])
        # Sessions live in memory; changed users are appended to function state about once
        # a second and replayed on start (a state write per event would cap the stage).
        self._sessions = SessionTracker(SessionConfig(write_through=False))
        if runtime.durable_state(context):
            own, everyone = runtime.segment_logs(context, STAGE)
            since = runtime.now_ms() - SESSION_MEMORY_MS
            for key, raw in replay(everyone, since):
                self._sessions.restore(key, raw)
            self._segments = PeriodicSegments(own, SNAPSHOT_INTERVAL_MS, SESSION_MEMORY_MS)
        catalog_topic = config.get("catalog_topic")
        if catalog_topic:
            self._follow_catalog(runtime.own_client(), str(catalog_topic))
        self._ready = True

    def _follow_catalog(self, client: Any, topic: str) -> None:
        """Load the compacted catalog, then keep following it from a background thread.

        On a client of its own (see `runtime.own_client`), and a reader rather than a
        TableView, whose callbacks would run on that client's listener thread. The initial
        load is synchronous, so the first events already join against the whole catalog.
        """
        reader = client.create_reader(topic, pulsar.MessageId.earliest, is_read_compacted=True)
        while reader.has_message_available():
            self._apply(reader.read_next())
        self._catalog_reader = reader
        threading.Thread(target=self._keep_following, name="catalog", daemon=True).start()

    def _keep_following(self) -> None:
        while True:
            try:
                message = self._catalog_reader.read_next(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            except Exception:
                log.exception("catalog reader failed; retrying")
                time.sleep(1)
                continue
            self._apply(message)

    def _apply(self, message: Any) -> None:
        self._on_catalog(message.partition_key(), message.data())

    def _on_catalog(self, key: str, payload: bytes | None) -> None:
        try:
            self._catalog.apply_message(key, payload, decode_catalog_item)
        except Exception:
            # One corrupt catalog record must not stop the view; the item stays as it was.
            log.exception("skipping unreadable catalog record %r", key)

    def process(self, input: bytes, context: Any) -> None:
        if not self._ready:
            self._setup(context)
        assert self._sessions is not None
        key = context.get_partition_key() or ""
        message = runtime.decode_or_dead_letter(
            context, input, wire.decode_event, dlq=self._dlq, stage=STAGE
        )
        if message is None:
            return
        accepted_at = runtime.accepted_at_ms(context)
        outcome = enrich(
            wire.to_stream_event(message, self._tenant),
            accepted_at,
            self._sessions,
            self._catalog,
            self._devices,
        )
        if isinstance(outcome, DeadLetter):
            runtime.dead_letter(
                context,
                self._dlq,
                input,
                stage=STAGE,
                reason=outcome.reason.value,
                detail=outcome.detail,
                key=key,
                extra=outcome.properties(),
            )
            return
        if outcome.late:
            context.record_metric("events_late", 1)
        if self._segments is not None:
            for user, spans in self._sessions.take_dirty().items():
                self._segments.record(user, spans)
            self._segments.maybe_flush(runtime.now_ms())
        runtime.forward(
            context,
            self._output,
            wire.to_enriched_proto(outcome, message).SerializeToString(),
            key=key or wire.subject_of(message),
            event_time_ms=wire.timestamp_ms(message.occurred_at),
            accepted_at=accepted_at,
        )
