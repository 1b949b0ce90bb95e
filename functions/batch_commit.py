"""Enriched events → PostgreSQL state, one transaction per batch, acknowledged after it.

The pipeline Function hands each event over with its delivery; a flusher thread commits the
buffer when it holds ``max_batch`` events or its oldest has waited ``max_delay_ms``, then
acknowledges every message of the batch. Nothing is acknowledged before its commit: if the
commit fails (PostgreSQL down), the batch stays buffered and is retried with backoff, and
`add` blocks once ``max_buffer`` events wait (backpressure to the subscription). If the
flusher thread dies of anything else, the process exits so the worker restarts it; the
broker redelivers what was not acknowledged and the ledger counts it once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import Histogram

from functions import runtime
from magnetar.db.app_role import refuse_unsafe_role
from magnetar.db.ledger import LedgerUpkeep
from magnetar.db.state_writer import commit_batch
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.problems import EnvironmentProblem

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
    max_batch: int = 2_000
    max_delay_ms: int = 5
    max_buffer: int = 5_000
    # Test-only: see `ledger_enabled`. Never off in production.
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
            ledger=ledger_enabled(config),
        )


# The second key the test-only switch needs. No production path writes either key:
# `functions.deployment.pipeline` (behind `magnetar functions deploy/render`, onboarding and
# the chart's deploy job) has no option for them (tests/unit/functions/test_ledger_switch.py).
LEDGER_OFF_GUARD = ("test_only_fault_suite_control", "count-every-redelivery-again")


def ledger_enabled(config: dict[str, Any]) -> bool:
    """Whether the processed-event ledger is used: always, except in the fault suite's
    control runs (tests/faults), which turn it off to prove their checks can fail. Those set
    ``"ledger": "off"`` *and* `LEDGER_OFF_GUARD`; ``"off"`` alone is refused, so no stray or
    hand-edited config can make a tenant count redeliveries twice."""
    if str(config.get("ledger", "on")).lower() != "off":
        return True
    key, value = LEDGER_OFF_GUARD
    if config.get(key) != value:
        raise ValueError(
            'materialize: user config "ledger": "off" is a test-only switch (the fault '
            "suite's control runs) and is refused without its test-only guard; remove "
            '"ledger" from the function\'s user config (`magnetar functions deploy` does)'
        )
    return False


# A commit that fails with these will fail the same way on every retry: the data, not the
# database, is at fault. The batch is split to find the event, which goes to the DLQ.
PERMANENT_ERRORS: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
)
DLQ_STEP = "materialize"


@dataclass
class _Pending:
    events: list[EnrichedEvent] = field(default_factory=list)
    deliveries: list[tuple[Any, str]] = field(default_factory=list)
    accepted_at: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    oldest_at: float = 0.0

    def take(self, count: int) -> _Pending:
        """The first `count` events as a batch of their own; the rest stay here."""
        first = self._part(slice(0, count))
        rest = self._part(slice(count, None))
        self.events, self.deliveries, self.accepted_at = (
            rest.events,
            rest.deliveries,
            rest.accepted_at,
        )
        self.payloads, self.keys = rest.payloads, rest.keys
        return first

    def split(self) -> tuple[_Pending, _Pending]:
        half = len(self.events) // 2
        return self._part(slice(0, half)), self._part(slice(half, None))

    def _part(self, part: slice) -> _Pending:
        return _Pending(
            self.events[part],
            self.deliveries[part],
            self.accepted_at[part],
            self.payloads[part],
            self.keys[part],
            self.oldest_at,
        )


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

    def add(
        self,
        event: EnrichedEvent,
        delivery: tuple[Any, str],
        accepted_at: int,
        *,
        payload: bytes = b"",
        key: str = "",
    ) -> None:
        """Buffer `event`; `payload` and `key` are the input's, for the DLQ should the event
        turn out to be one PostgreSQL cannot store."""
        with self._cond:
            while len(self._pending.events) >= self._config.max_buffer:
                self._cond.wait(0.05)
            if not self._pending.events:
                self._pending.oldest_at = time.monotonic()
            self._pending.events.append(event)
            self._pending.deliveries.append(delivery)
            self._pending.accepted_at.append(accepted_at)
            self._pending.payloads.append(payload)
            self._pending.keys.append(key)
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
                        # At most `max_batch` per transaction, also after an outage let the
                        # buffer fill: the rest is due at once and goes in the next batches.
                        batch = self._pending.take(self._config.max_batch)
                        self._cond.notify_all()
                        return batch
                    self._cond.wait(max(0.0, due - time.monotonic()))
                else:
                    self._cond.wait(0.1)

    def _run(self) -> None:
        try:
            self._flush_forever()
        except BaseException:
            # A flusher that is gone would leave the instance looking healthy while nothing
            # is committed or acknowledged again: exit, and the worker starts a new one.
            log.critical("the materialize flusher died; exiting", exc_info=True)
            os._exit(70)

    def _flush_forever(self) -> None:
        while True:
            self.flush(self._take())
            # Between batches: a bounded expiry of old ledger rows every few minutes.
            if self._conn is not None:
                self._ledger_upkeep.run_if_due(self._conn)

    def flush(self, batch: _Pending) -> None:
        """Commit `batch` and acknowledge it; an event PostgreSQL refuses for its data is
        isolated by halving the batch and dead-lettered with the error, the rest committed.
        Failures of the database itself are retried with backoff until they pass."""
        parts = [batch]
        while parts:
            part = parts.pop()
            refused = self._commit_retrying(part)
            if refused is None:
                self._acknowledge(part)
            elif len(part.events) == 1:
                self._dead_letter(part, refused)
            else:
                first, second = part.split()
                parts += [second, first]

    def _commit_retrying(self, part: _Pending) -> psycopg.Error | None:
        backoff = 0.05
        while True:
            try:
                self._commit(part)
                return None
            except PERMANENT_ERRORS as error:
                log.warning("PostgreSQL refused %d events: %s", len(part.events), error)
                return error
            except (psycopg.Error, EnvironmentProblem):
                log.exception("commit of %d events failed; retrying", len(part.events))
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _acknowledge(self, part: _Pending) -> None:
        committed = runtime.now_ms()
        for delivery in part.deliveries:
            runtime.ack(self._context, delivery)
        # End-to-end freshness: accepted by the gateway (and occurred) → visible in state.
        tenant = self._config.tenant_id
        since_accepted = FRESHNESS.labels(tenant, "accepted")
        since_occurred = FRESHNESS.labels(tenant, "occurred")
        for event, accepted in zip(part.events, part.accepted_at, strict=True):
            self._context.record_metric("freshness_ms", max(0, committed - accepted))
            since_accepted.observe(max(0, committed - accepted) / 1000)
            since_occurred.observe(max(0, committed - event.occurred_at) / 1000)

    def _dead_letter(self, part: _Pending, error: psycopg.Error) -> None:
        runtime.dead_letter(
            self._context,
            self._config.dlq_topic,
            part.payloads[0],
            stage=DLQ_STEP,
            reason="STATE_REFUSED",
            detail=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
            key=part.keys[0],
            delivery=part.deliveries[0],
            accepted_at=part.accepted_at[0],
        )

    def _commit(self, batch: _Pending) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._config.database_url, autocommit=True, connect_timeout=5
            )
            # Never write as a role row-level security does not bind (logged; retried,
            # so fixing the URL file and restarting the instance resumes).
            refuse_unsafe_role(self._conn)
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
        self._context.record_metric("batch_commit_ms", (time.monotonic() - started) * 1000)
        self._context.record_metric("events_materialized", outcome.counted)
        self._context.record_metric("events_already_counted", outcome.already_counted)
