"""Pulsar Function `materialize`: enriched events → PostgreSQL state, one transaction per batch.

Why a Function and not a consumer process: it is deployed, scaled and restarted per tenant
by the same worker as the other stages, with the same Key_Shared routing (one user's events
on one instance), and needs no process of its own to supervise.

The runtime calls ``process`` once per message on one thread; we buffer instead of writing
per message. A flusher thread commits the buffer when it holds ``max_batch`` events or its
oldest event has waited ``max_delay_ms``, then acknowledges every message of the batch.
``autoAck`` is off, so nothing is acknowledged before its commit: if the commit fails
(PostgreSQL down), the batch stays buffered and is retried with backoff, and ``process``
blocks once ``max_buffer`` messages wait (backpressure to the subscription); if the process
dies, the broker redelivers what was not acknowledged and the ledger counts it once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import Histogram
from pulsar import Function

from functions import runtime, wire
from magnetar.db.ledger import LedgerUpkeep
from magnetar.db.state_writer import commit_batch
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings

STAGE = "materialize"
log = logging.getLogger(__name__)

# In the instance's own registry, which the worker exposes on the broker's /metrics next to
# the runtime's metrics; a histogram (unlike `record_metric`'s summaries) has quantiles.
FRESHNESS = Histogram(
    "magnetar_function_freshness_seconds",
    "event → committed in PostgreSQL state, since gateway acceptance or since occurred_at",
    ("tenant", "since"),
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


@dataclass(frozen=True)
class MaterializeConfig:
    tenant_id: str
    database_url: str
    dlq_topic: str
    max_batch: int = 500
    max_delay_ms: int = 5
    max_buffer: int = 5_000
    # Test-only: user config ``"ledger": "off"`` makes the fault suite's control runs
    # (tests/faults) count redeliveries again, proving those tests can fail. Never in production.
    ledger: bool = True

    @classmethod
    def from_user_config(cls, config: dict[str, Any]) -> MaterializeConfig:
        # The URL is read from a file on the worker so the password stays out of the
        # function's metadata (visible through the admin API) and off command lines.
        url_file = config.get("database_url_file")
        url = Path(url_file).read_text().strip() if url_file else str(config["database_url"])
        return cls(
            tenant_id=str(config["tenant_id"]),
            database_url=url,
            dlq_topic=str(config["dlq_topic"]),
            max_batch=int(config.get("max_batch", cls.max_batch)),
            max_delay_ms=int(config.get("max_delay_ms", cls.max_delay_ms)),
            max_buffer=int(config.get("max_buffer", cls.max_buffer)),
            ledger=str(config.get("ledger", "on")).lower() != "off",
        )


@dataclass
class _Pending:
    events: list[EnrichedEvent] = field(default_factory=list)
    deliveries: list[tuple[Any, str]] = field(default_factory=list)
    accepted_at: list[int] = field(default_factory=list)
    oldest_at: float = 0.0


class BatchCommitter:
    """The buffer and the flusher thread; separate from the Function for testing."""

    def __init__(self, config: MaterializeConfig, context: Any) -> None:
        self._config = config
        self._context = context
        self._signals = SignalSettings()
        self._pending = _Pending()
        self._cond = threading.Condition()
        self._conn: psycopg.Connection[Any] | None = None
        self._ledger_upkeep = LedgerUpkeep(config.tenant_id)
        self._thread = threading.Thread(target=self._run, name="materialize-flush", daemon=True)
        self._thread.start()

    def add(self, event: EnrichedEvent, delivery: tuple[Any, str], accepted_at: int) -> None:
        with self._cond:
            while len(self._pending.events) >= self._config.max_buffer:
                self._cond.wait(0.05)
            if not self._pending.events:
                self._pending.oldest_at = time.monotonic()
            self._pending.events.append(event)
            self._pending.deliveries.append(delivery)
            self._pending.accepted_at.append(accepted_at)
            if len(self._pending.events) >= self._config.max_batch:
                self._cond.notify_all()

    def _take(self) -> _Pending:
        delay = self._config.max_delay_ms / 1000
        with self._cond:
            while True:
                if self._pending.events:
                    due = self._pending.oldest_at + delay
                    full = len(self._pending.events) >= self._config.max_batch
                    if full or time.monotonic() >= due:
                        batch, self._pending = self._pending, _Pending()
                        self._cond.notify_all()
                        return batch
                    self._cond.wait(max(0.0, due - time.monotonic()))
                else:
                    self._cond.wait(0.1)

    def _run(self) -> None:
        while True:
            batch = self._take()
            backoff = 0.05
            while not self._commit(batch):
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            committed = runtime.now_ms()
            for delivery in batch.deliveries:
                runtime.ack(self._context, delivery)
            # End-to-end freshness: accepted by the gateway (and occurred) → visible in state.
            tenant = self._config.tenant_id
            since_accepted = FRESHNESS.labels(tenant, "accepted")
            since_occurred = FRESHNESS.labels(tenant, "occurred")
            for event, accepted in zip(batch.events, batch.accepted_at, strict=True):
                self._context.record_metric("freshness_ms", max(0, committed - accepted))
                since_accepted.observe(max(0, committed - accepted) / 1000)
                since_occurred.observe(max(0, committed - event.occurred_at) / 1000)
            # Between batches: a bounded expiry of old ledger rows every few minutes.
            self._ledger_upkeep.run_if_due(self._conn)

    def _commit(self, batch: _Pending) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self._config.database_url, autocommit=True, connect_timeout=5
                )
            started = time.monotonic()
            outcome = commit_batch(
                self._conn,
                self._config.tenant_id,
                batch.events,
                self._signals,
                now_ms=runtime.now_ms(),
                ledger=self._config.ledger,
                accepted_at_ms={
                    e.event_id: a for e, a in zip(batch.events, batch.accepted_at, strict=True)
                },
            )
        except psycopg.Error:
            log.exception("commit of %d events failed; retrying", len(batch.events))
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return False
        self._context.record_metric("batch_commit_ms", (time.monotonic() - started) * 1000)
        self._context.record_metric("events_materialized", outcome.counted)
        self._context.record_metric("events_already_counted", outcome.already_counted)
        return True


class Materialize(Function):  # type: ignore[misc]
    def __init__(self) -> None:
        self._committer: BatchCommitter | None = None
        self._config: MaterializeConfig | None = None

    def process(self, input: bytes, context: Any) -> None:
        if self._committer is None:
            self._config = MaterializeConfig.from_user_config(dict(runtime.user_config(context)))
            self._committer = BatchCommitter(self._config, context)
        assert self._config is not None
        message = runtime.decode_or_dead_letter(
            context, input, wire.decode_enriched, dlq=self._config.dlq_topic, stage=STAGE
        )
        if message is None:
            return
        event = wire.to_state_event(message)
        if event.tenant_id != self._config.tenant_id:
            runtime.dead_letter(
                context,
                self._config.dlq_topic,
                input,
                stage=STAGE,
                reason="WRONG_TENANT",
                detail=f"event of {event.tenant_id!r} on {self._config.tenant_id!r}'s topic",
                key=context.get_partition_key() or "",
            )
            return
        self._committer.add(
            event, runtime.current_delivery(context), runtime.accepted_at_ms(context)
        )
