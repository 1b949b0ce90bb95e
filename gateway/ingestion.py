"""Ingesting a batch: check its size, validate its events, publish the valid ones.

The domain side of `EventService`: no gRPC, no generated code. It decides what a client is
told (partial success, or one INVALID_ARGUMENT when nothing can be accepted) and hands the
accepted events to an `EventSink` (the Pulsar publisher in production, a fake in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.event_validation import (
    DEFAULT_LIMITS,
    EventLike,
    EventLimits,
    RejectedEvent,
    field_paths,
    split_batch,
)
from magnetar.errors import FieldViolation, InvalidArgument


class EventSink(Protocol):
    """Where accepted events go; returns only once they are durable."""

    async def publish(
        self, tenant_id: str, events: Sequence[EventLike], timeout_s: float | None
    ) -> None: ...


@dataclass(frozen=True)
class IngestOutcome:
    accepted_count: int
    rejected: list[RejectedEvent]
    accepted_at_s: float


class Ingestor:
    """Validates and publishes batches for the tenant of the caller's key."""

    def __init__(
        self,
        sink: EventSink,
        limits: EventLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        stream_window: int = 8,
    ) -> None:
        self._sink = sink
        self.limits = limits
        self._clock = clock
        self._stream_window = stream_window

    def _check_size(self, count: int) -> None:
        limit = self.limits.max_batch_events
        if count == 0:
            raise InvalidArgument(
                "a batch needs at least one event",
                [FieldViolation("events", f"must hold 1 to {limit} events")],
                reason="BATCH_EMPTY",
                metadata={"max_events": str(limit)},
            )
        if count > limit:
            raise InvalidArgument(
                f"a batch holds at most {limit} events, this one {count}",
                [FieldViolation("events", f"at most {limit} events per batch, got {count}")],
                reason="BATCH_TOO_LARGE",
                metadata={"max_events": str(limit), "events": str(count)},
            )

    async def ingest(
        self,
        tenant_id: str,
        events: Sequence[EventLike],
        *,
        all_or_nothing: bool = False,
        timeout_s: float | None = None,
        refuse_when_none_valid: bool = True,
    ) -> IngestOutcome:
        """Publish the valid events of one batch; see EventService.Ingest for the contract."""
        self._check_size(len(events))
        now = self._clock()
        batch = split_batch(events, now, self.limits)
        nothing_valid = not batch.accepted and refuse_when_none_valid
        if batch.rejected and (all_or_nothing or nothing_valid):
            first = batch.rejected[0]
            raise InvalidArgument(
                f"{len(batch.rejected)} of {len(events)} events are invalid "
                f"(first: events[{first.index}] {first.reason})",
                [FieldViolation(path, text) for path, text in field_paths(batch.rejected)],
                reason="EVENTS_INVALID",
                metadata={"rejected": str(len(batch.rejected)), "events": str(len(events))},
            )
        if batch.accepted:
            await self._sink.publish(tenant_id, batch.accepted, timeout_s)
        return IngestOutcome(len(batch.accepted), batch.rejected, now)

    async def stream(
        self,
        tenant_id: str,
        batches: AsyncIterator[tuple[int, Sequence[EventLike]]],
        time_remaining: Callable[[], float | None] = lambda: None,
    ) -> AsyncIterator[tuple[int, IngestOutcome]]:
        """Ingest batches as they arrive, several at once, answering in arrival order.

        Reading runs beside answering, so a client that waits for acknowledgements before
        sending more is answered as soon as its batch is durable. At most `stream_window`
        batches are in progress; the first failure ends the stream (the client resends what
        was not answered).
        """
        # Unbounded queue, bounded by `slots`: a slot is taken before a batch starts and
        # given back once its answer is out, so at most `stream_window` are in progress.
        queue: asyncio.Queue[tuple[int, asyncio.Task[IngestOutcome]] | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self._stream_window)

        async def read() -> None:
            try:
                async for batch_id, events in batches:
                    self._check_size(len(events))
                    await slots.acquire()
                    task = asyncio.ensure_future(
                        self.ingest(
                            tenant_id,
                            events,
                            timeout_s=time_remaining(),
                            refuse_when_none_valid=False,
                        )
                    )
                    queue.put_nowait((batch_id, task))
            finally:
                queue.put_nowait(None)

        reader = asyncio.ensure_future(read())
        in_flight: list[asyncio.Task[IngestOutcome]] = []
        try:
            while (item := await queue.get()) is not None:
                batch_id, task = item
                in_flight.append(task)
                outcome = await task
                in_flight.remove(task)
                yield batch_id, outcome
                slots.release()
            await reader  # a reading error (e.g. an oversize batch) ends the stream
        finally:
            reader.cancel()
            while not queue.empty():
                if (item := queue.get_nowait()) is not None:
                    in_flight.append(item[1])
            for task in in_flight:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(reader, *in_flight, return_exceptions=True)
