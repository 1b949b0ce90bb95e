"""ImportEvents against the real broker and PostgreSQL, through a real gateway over gRPC:
old events are accepted and land on the tenant's import topic (not raw), keyed by user with
their original time; future events are still refused; each batch is answered with the
tenant's counted events; live ingest keeps refusing the same old events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.raw_events import import_events_topic, provision_import_topic
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2 as pb
from magnetar.v1 import event_service_pb2_grpc
from magnetar.v1 import events_pb2 as ev
from tests.integration.gateway_harness import (
    IngestTenant,
    RunningGateway,
    read_all,
)

pytestmark = pytest.mark.integration

YEAR_S = 365 * 24 * 3600


def old_event(user: str, age_s: int, **fields: Any) -> ev.Event:
    message = ev.Event(
        event_id=uuid.uuid4().hex, user_id=user, type=ev.EVENT_TYPE_PURCHASE, item_id="mug"
    )
    message.occurred_at.FromSeconds(int(time.time()) - age_s)
    message.MergeFrom(ev.Event(**fields))
    return message


@pytest.fixture(scope="module")
def stub(gateway: RunningGateway) -> Iterator[event_service_pb2_grpc.EventServiceStub]:
    with grpc.insecure_channel(gateway.address) as channel:
        yield event_service_pb2_grpc.EventServiceStub(channel)


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def test_old_events_are_imported_to_the_import_topic_with_per_batch_progress(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    provision_import_topic(pulsar_admin, ingest_tenant.tenant_id)
    year_old = [old_event(f"u{n}", YEAR_S) for n in range(3)]
    future = old_event("u9", -3600)
    requests = [
        pb.ImportEventsRequest(batch_id=1, events=year_old[:2]),
        pb.ImportEventsRequest(batch_id=2, events=[year_old[2], future]),
    ]
    replies = list(
        stub.ImportEvents(iter(requests), metadata=bearer(ingest_tenant.ingest_key), timeout=20)
    )
    assert [(r.batch_id, r.accepted_count) for r in replies] == [(1, 2), (2, 1)]
    [rejected] = replies[1].rejected_events
    assert (rejected.index, rejected.reason) == (1, pb.REJECTION_REASON_OCCURRED_IN_FUTURE)
    # No pipeline runs for this tenant: nothing is counted, and the count says so.
    assert all(r.HasField("tenant_counted_events") for r in replies)
    assert replies[-1].tenant_counted_events == 0

    topic = import_events_topic(ingest_tenant.tenant_id)
    messages = read_all(settings, topic, expect=3)
    decoded = sorted((m.partition_key(), ev.Event.FromString(m.data())) for m in messages)
    assert [key for key, _ in decoded] == ["u0", "u1", "u2"]
    assert {e.event_id for _, e in decoded} == {e.event_id for e in year_old}
    assert {m.event_timestamp() for m in messages} == {
        e.occurred_at.ToMilliseconds() for e in year_old
    }
    assert read_all(settings, ingest_tenant.raw_topic, expect=0, timeout_s=1) == []


def test_live_ingest_still_refuses_what_an_import_accepts(
    stub: Any, ingest_tenant: IngestTenant
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Ingest(
            pb.IngestRequest(events=[old_event("u1", YEAR_S)]),
            metadata=bearer(ingest_tenant.ingest_key),
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_an_import_to_a_tenant_without_an_import_topic_is_failed_precondition(
    stub: Any, ingest_tenant: IngestTenant
) -> None:
    requests = [pb.ImportEventsRequest(batch_id=1, events=[old_event("u1", YEAR_S)])]
    with pytest.raises(grpc.RpcError) as caught:
        list(
            stub.ImportEvents(iter(requests), metadata=bearer(ingest_tenant.ingest_key), timeout=20)
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "import" in (caught.value.details() or "")
