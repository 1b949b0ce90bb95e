"""`magnetar.v1.EventService`: proto in, `Ingestor` (the domain), proto out.

Live events (`Ingest`, `StreamEvents`) and imported history (`ImportEvents`) each have their
own `Ingestor`: the import's validates without the age limit and publishes to the tenant's
import topic through its own quota and producers (docs/ingestion.md, "Importing history").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from google.protobuf import timestamp_pb2

from gateway.event_validation import EventLike, RejectedEvent
from gateway.ingestion import Ingestor, IngestOutcome
from gateway.interceptors import current_tenant, reauthorize
from magnetar.v1 import event_service_pb2 as pb
from magnetar.v1 import event_service_pb2_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EventService"].full_name


def _rejections(rejected: Sequence[RejectedEvent]) -> list[pb.EventRejection]:
    return [
        pb.EventRejection(
            index=r.index,
            reason=pb.RejectionReason.Value(f"REJECTION_REASON_{r.reason}"),
            violations=[
                pb.EventViolation(
                    field=v.field,
                    reason=pb.RejectionReason.Value(f"REJECTION_REASON_{v.reason}"),
                    description=v.description,
                )
                for v in r.violations
            ],
        )
        for r in rejected
    ]


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class CountedEvents(Protocol):
    """The tenant's count of events its pipeline has counted; None when it cannot be read."""

    async def counted(self, tenant_id: str) -> int | None: ...


class EventService(event_service_pb2_grpc.EventServiceServicer):
    def __init__(
        self,
        ingestor: Ingestor,
        importer: Ingestor,
        counted: CountedEvents,
    ) -> None:
        self._ingestor = ingestor
        self._importer = importer
        self._counted = counted

    async def Ingest(self, request: pb.IngestRequest, context: Any) -> pb.IngestResponse:
        outcome: IngestOutcome = await self._ingestor.ingest(
            current_tenant(),
            request.events,
            all_or_nothing=request.all_or_nothing,
            timeout_s=context.time_remaining(),
        )
        return pb.IngestResponse(
            accepted_count=outcome.accepted_count,
            rejected_events=_rejections(outcome.rejected),
            accepted_at=_timestamp(outcome.accepted_at_s),
        )

    async def StreamEvents(
        self, request_iterator: AsyncIterator[pb.StreamEventsRequest], context: Any
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        async def batches() -> AsyncIterator[tuple[int, Sequence[EventLike]]]:
            async for request in request_iterator:
                # A key revoked while the stream is open stops it here (interceptors).
                await reauthorize()
                yield request.batch_id, request.events

        outcomes = self._ingestor.stream(current_tenant(), batches(), context.time_remaining)
        async for batch_id, outcome in outcomes:
            yield pb.StreamEventsResponse(
                batch_id=batch_id,
                accepted_count=outcome.accepted_count,
                rejected_events=_rejections(outcome.rejected),
                accepted_at=_timestamp(outcome.accepted_at_s),
            )

    async def ImportEvents(
        self, request_iterator: AsyncIterator[pb.ImportEventsRequest], context: Any
    ) -> AsyncIterator[pb.ImportEventsResponse]:
        tenant = current_tenant()

        async def batches() -> AsyncIterator[tuple[int, Sequence[EventLike]]]:
            async for request in request_iterator:
                await reauthorize()
                yield request.batch_id, request.events

        outcomes = self._importer.stream(tenant, batches(), context.time_remaining)
        async for batch_id, outcome in outcomes:
            response = pb.ImportEventsResponse(
                batch_id=batch_id,
                accepted_count=outcome.accepted_count,
                rejected_events=_rejections(outcome.rejected),
                accepted_at=_timestamp(outcome.accepted_at_s),
            )
            counted = await self._counted.counted(tenant)
            if counted is not None:
                response.tenant_counted_events = counted
            yield response
