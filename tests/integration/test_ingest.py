"""Ingestion against the real broker and PostgreSQL, through a real gateway over gRPC.

Proves issue 3's "done when": accepted events are on the raw topic, keyed by user and
decodable with nothing but the registered schema; a restarted producer's resend is dropped
by the broker; every error case answers with its status and `google.rpc` details.
"""

from __future__ import annotations

import base64
import json
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.event_publisher import PublisherOptions
from gateway.wiring import GatewayOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.raw_events import SerializedEventSchema
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2 as pb
from magnetar.v1 import event_service_pb2_grpc
from magnetar.v1 import events_pb2 as ev
from tests.integration.conftest import unique_name
from tests.integration.gateway_harness import (
    IngestTenant,
    RunningGateway,
    add_tenant_row,
    pulsar_client,
    read_all,
    remove_tenant_row,
)

pytestmark = pytest.mark.integration


def event(
    user: str, item: str = "sku-1", kind: int = ev.EVENT_TYPE_VIEW, **fields: Any
) -> ev.Event:
    message = ev.Event(
        event_id=fields.pop("event_id", uuid.uuid4().hex),
        user_id=user,
        type=kind,  # type: ignore[arg-type]
        item_id=item,
        **fields,
    )
    if "occurred_at" not in fields:
        message.occurred_at.GetCurrentTime()
    return message


@pytest.fixture(scope="module")
def stub(gateway: RunningGateway) -> Iterator[event_service_pb2_grpc.EventServiceStub]:
    with grpc.insecure_channel(gateway.address) as channel:
        yield event_service_pb2_grpc.EventServiceStub(channel)


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def failure(call: Any) -> tuple[grpc.StatusCode, dict[str, Any]]:
    """Run `call`, expect an RpcError; its code and its decoded google.rpc details."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    status = rpc_status.from_call(error)
    details: dict[str, Any] = {}
    for detail in status.details if status else ():
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(cls.DESCRIPTOR):
                unpacked = cls()
                detail.Unpack(unpacked)
                details[cls.__name__] = unpacked
    return error.code(), details


def registry_decoder(admin: PulsarAdmin, topic: str) -> Any:
    """A message class built only from the schema in Pulsar's registry (no generated code)."""
    schema = admin.get_schema(topic)
    assert schema is not None and schema["type"] == "PROTOBUF_NATIVE"
    definition = json.loads(schema["data"])
    files = descriptor_pb2.FileDescriptorSet.FromString(
        base64.b64decode(definition["fileDescriptorSet"])
    )
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(definition["rootMessageTypeName"])
    )


# -- the happy path ----------------------------------------------------------------------


def test_accepted_events_are_on_the_raw_topic_keyed_by_user_and_decodable_from_registry(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    sent = [event("alice", f"sku-{i}") for i in range(4)] + [event("bob", "sku-9")]
    sent.append(ev.Event(**{**_fields(event("", "sku-5")), "anonymous_id": "anon-7"}))
    reply = stub.Ingest(
        pb.IngestRequest(events=sent), metadata=bearer(ingest_tenant.ingest_key), timeout=10
    )
    assert reply.accepted_count == len(sent)
    assert not reply.rejected_events

    messages = read_all(settings, ingest_tenant.raw_topic, expect=len(sent))
    decode = registry_decoder(pulsar_admin, ingest_tenant.raw_topic)
    decoded: dict[str, list[str]] = {m.partition_key(): [] for m in messages}
    partitions: dict[str, set[str]] = {}
    for message in messages:
        generic = decode.FromString(message.data())
        decoded[message.partition_key()].append(generic.event_id)
        partitions.setdefault(message.partition_key(), set()).add(message.topic_name())
    assert sorted(decoded) == ["alice", "anon-7", "bob"]
    assert decoded["alice"] == [e.event_id for e in sent[:4]]  # one user's order kept
    assert all(len(topics) == 1 for topics in partitions.values())  # one partition per user
    assert {e.event_id for e in sent} == {i for ids in decoded.values() for i in ids}


def _fields(message: ev.Event) -> dict[str, Any]:
    return {f.name: v for f, v in message.ListFields()}


def test_mixed_batch_publishes_the_valid_and_reports_each_rejection(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    future = event("carol")
    future.occurred_at.FromSeconds(int(time.time()) + 3600)
    batch = [event("carol"), future, event("carol"), event("carol", item="")]
    reply = stub.Ingest(
        pb.IngestRequest(events=batch), metadata=bearer(ingest_tenant.ingest_key), timeout=10
    )
    assert reply.accepted_count == 2
    assert [(r.index, r.reason) for r in reply.rejected_events] == [
        (1, pb.REJECTION_REASON_OCCURRED_IN_FUTURE),
        (3, pb.REJECTION_REASON_MISSING_FIELD),
    ]
    assert reply.rejected_events[1].violations[0].field == "item_id"
    messages = read_all(settings, ingest_tenant.raw_topic, expect=2)
    assert len(messages) == 2


def test_stream_acknowledges_each_batch_in_order(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    requests = [
        pb.StreamEventsRequest(batch_id=10 + n, events=[event(f"u{n}") for _ in range(n + 1)])
        for n in range(5)
    ]
    requests.append(pb.StreamEventsRequest(batch_id=99, events=[event("u", item="")]))
    replies = list(
        stub.StreamEvents(iter(requests), metadata=bearer(ingest_tenant.ingest_key), timeout=20)
    )
    assert [r.batch_id for r in replies] == [10, 11, 12, 13, 14, 99]
    assert [r.accepted_count for r in replies] == [1, 2, 3, 4, 5, 0]
    assert replies[-1].rejected_events[0].reason == pb.REJECTION_REASON_MISSING_FIELD
    assert len(read_all(settings, ingest_tenant.raw_topic, expect=15)) == 15


# -- broker deduplication ----------------------------------------------------------------


def test_resend_by_a_restarted_producer_is_dropped_by_the_broker(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    batch = [event("dave", f"sku-{i}") for i in range(3)]
    stub.Ingest(
        pb.IngestRequest(events=batch), metadata=bearer(ingest_tenant.ingest_key), timeout=10
    )
    # A producer reopened under a gone producer's name (as the gateway's own producer is
    # after a broken connection) resumes from the broker's sequence id.
    options = PublisherOptions(instance_name="restart-test")
    first = RunningGateway(settings.merged({"grpc_port": 0}), GatewayOptions(publisher=options))
    try:
        with grpc.insecure_channel(first.address) as channel:
            # Two calls, two broker entries: the broker tracks a batch by its first id.
            for item in ("sku-0", "sku-1"):
                event_service_pb2_grpc.EventServiceStub(channel).Ingest(
                    pb.IngestRequest(events=[event("erin", item)]),
                    metadata=bearer(ingest_tenant.ingest_key),
                    timeout=10,
                )
        name = first.server.adapters.publisher.producer_name(ingest_tenant.tenant_id)
    finally:
        first.stop()

    resent = event("erin", "sku-1")
    client = pulsar_client(settings)
    try:
        producer = client.create_producer(
            ingest_tenant.raw_topic, producer_name=name, schema=SerializedEventSchema()
        )
        last = producer.last_sequence_id()
        # The broker remembers what the stopped producer sent: sequence ids 0 and 1. (The
        # resend needs an id above 0: pulsar-client ignores an explicit sequence_id of 0.)
        assert last == 1
        duplicate = producer.send(
            resent.SerializeToString(), partition_key="erin", sequence_id=last
        )
        fresh = producer.send(
            resent.SerializeToString(), partition_key="erin", sequence_id=last + 1
        )
        producer.close()
    finally:
        client.close()
    assert duplicate.entry_id() == -1 or duplicate.ledger_id() == -1  # not stored
    assert fresh.entry_id() >= 0
    messages = read_all(settings, ingest_tenant.raw_topic, expect=6)
    assert [m.partition_key() for m in messages].count("erin") == 3  # two originals + fresh


# -- errors as any client sees them ----------------------------------------------------------


def test_no_key_is_unauthenticated(stub: Any) -> None:
    code, details = failure(lambda: stub.Ingest(pb.IngestRequest(events=[event("x")]), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details["ErrorInfo"].reason == "API_KEY_MISSING"


@pytest.mark.parametrize("key", ["not-a-key", f"mgk.nobody.{'0' * 16}.{'A' * 43}"])
def test_malformed_or_unknown_key_is_unauthenticated(stub: Any, key: str) -> None:
    code, details = failure(
        lambda: stub.Ingest(pb.IngestRequest(events=[event("x")]), metadata=bearer(key), timeout=10)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details["ErrorInfo"].reason in {"API_KEY_MALFORMED", "API_KEY_INVALID"}


def test_a_key_relabelled_with_another_tenant_is_unauthenticated(
    stub: Any, ingest_tenant: IngestTenant
) -> None:
    prefix, _tenant, key_id, random = ingest_tenant.ingest_key.split(".")
    forged = f"{prefix}.{unique_name('other')}.{key_id}.{random}"
    code, _ = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=[event("x")]), metadata=bearer(forged), timeout=10
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_key_is_refused_within_the_cache_ttl(
    stub: Any, ingest_tenant: IngestTenant, key_store: ApiKeyStore
) -> None:
    request = pb.IngestRequest(events=[event("x")])
    stub.Ingest(request, metadata=bearer(ingest_tenant.ingest_key), timeout=10)
    key_store.revoke(ingest_tenant.tenant_id, ingest_tenant.ingest_key_id)
    time.sleep(0.3)
    code, details = failure(
        lambda: stub.Ingest(request, metadata=bearer(ingest_tenant.ingest_key), timeout=10)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details["ErrorInfo"].reason == "API_KEY_REVOKED"


def test_revoking_a_key_ends_its_open_stream_after_the_batches_already_accepted(
    stub: Any, ingest_tenant: IngestTenant, key_store: ApiKeyStore, settings: Settings
) -> None:
    """Authentication runs once per call; an open StreamEvents re-checks the key per batch."""
    outgoing: queue.Queue[pb.StreamEventsRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.StreamEventsRequest]:
        while (request := outgoing.get(timeout=20)) is not None:
            yield request

    replies = stub.StreamEvents(requests(), metadata=bearer(ingest_tenant.ingest_key), timeout=20)
    before = [event("early") for _ in range(3)]
    outgoing.put(pb.StreamEventsRequest(batch_id=1, events=before))
    assert next(replies).accepted_count == 3

    key_store.revoke(ingest_tenant.tenant_id, ingest_tenant.ingest_key_id)
    time.sleep(0.3)  # beyond the harness's key cache TTL (0.2 s)
    outgoing.put(pb.StreamEventsRequest(batch_id=2, events=[event("late")]))
    try:
        code, details = failure(lambda: next(replies))
    finally:
        outgoing.put(None)
    assert (code, details["ErrorInfo"].reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_REVOKED",
    )
    published = read_all(settings, ingest_tenant.raw_topic, expect=3)
    assert sorted(m.partition_key() for m in published) == ["early"] * 3


def test_read_key_lacks_the_ingest_scope(stub: Any, ingest_tenant: IngestTenant) -> None:
    code, details = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=[event("x")]),
            metadata=bearer(ingest_tenant.read_key),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details["ErrorInfo"].reason == "SCOPE_MISSING"
    assert details["ErrorInfo"].metadata["required_scope"] == "ingest"


def test_platform_key_cannot_ingest_for_a_tenant(stub: Any, admin_key: str) -> None:
    """The public gateway does not know the platform key at all (the admin plane's)."""
    code, _ = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=[event("x")]), metadata=bearer(admin_key), timeout=10
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_batch_with_no_valid_event_is_invalid_argument_with_field_violations(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    bad = [
        event("x", item=""),
        ev.Event(event_id="has space", user_id="y", type=ev.EVENT_TYPE_VIEW),
    ]
    code, details = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=bad), metadata=bearer(ingest_tenant.ingest_key), timeout=10
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["ErrorInfo"].reason == "EVENTS_INVALID"
    fields = {v.field for v in details["BadRequest"].field_violations}
    assert {
        "events[0].item_id",
        "events[1].event_id",
        "events[1].item_id",
        "events[1].occurred_at",
    } <= fields
    assert read_all(settings, ingest_tenant.raw_topic, expect=0, timeout_s=1) == []


def test_all_or_nothing_refuses_the_whole_batch(
    stub: Any, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    batch = [event("x"), event("x", attributes={"Bad Key": "v"})]
    code, details = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=batch, all_or_nothing=True),
            metadata=bearer(ingest_tenant.ingest_key),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == [
        "events[1].attributes[Bad Key]"
    ]
    assert read_all(settings, ingest_tenant.raw_topic, expect=0, timeout_s=1) == []


def test_oversize_batch_names_the_limit(stub: Any, ingest_tenant: IngestTenant) -> None:
    batch = [event("x") for _ in range(1001)]
    code, details = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=batch), metadata=bearer(ingest_tenant.ingest_key), timeout=10
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["ErrorInfo"].reason == "BATCH_TOO_LARGE"
    assert details["ErrorInfo"].metadata["max_events"] == "1000"
    assert details["BadRequest"].field_violations[0].field == "events"


def test_request_over_the_size_limit_is_resource_exhausted(
    stub: Any, ingest_tenant: IngestTenant
) -> None:
    big = {f"k{i}": "v" * 1000 for i in range(30)}
    batch = [event("x", attributes=big) for _ in range(300)]  # ~9 MB
    code, _ = failure(
        lambda: stub.Ingest(
            pb.IngestRequest(events=batch), metadata=bearer(ingest_tenant.ingest_key), timeout=10
        )
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_tenant_without_raw_topic_is_failed_precondition(
    stub: Any, settings: Settings, pulsar_admin: PulsarAdmin, key_store: ApiKeyStore
) -> None:
    tenant_id = unique_name("t")
    add_tenant_row(settings, tenant_id)
    try:
        minted, _ = key_store.create(tenant_id, [Scope.INGEST])
        code, details = failure(
            lambda: stub.Ingest(
                pb.IngestRequest(events=[event("x")]), metadata=bearer(minted.secret), timeout=10
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details["ErrorInfo"].reason == "TENANT_NOT_PROVISIONED"
    finally:
        remove_tenant_row(settings, tenant_id)


def test_pulsar_unreachable_is_unavailable_within_the_deadline(
    settings: Settings, ingest_tenant: IngestTenant
) -> None:
    dead = settings.merged({"grpc_port": 0, "pulsar_service_url": "pulsar://127.0.0.1:9"})
    options = GatewayOptions(
        publisher=PublisherOptions(connection_timeout_ms=500, operation_timeout_s=2)
    )
    running = RunningGateway(dead, options)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = event_service_pb2_grpc.EventServiceStub(channel)
            started = time.monotonic()
            code, details = failure(
                lambda: stub.Ingest(
                    pb.IngestRequest(events=[event("x")]),
                    metadata=bearer(ingest_tenant.ingest_key),
                    timeout=5,
                )
            )
            assert code == grpc.StatusCode.UNAVAILABLE
            assert details["ErrorInfo"].reason.startswith("PULSAR_")
            assert time.monotonic() - started < 5
            # A short client deadline is respected rather than waiting for Pulsar's timeouts.
            started = time.monotonic()
            code, _ = failure(
                lambda: stub.Ingest(
                    pb.IngestRequest(events=[event("x")]),
                    metadata=bearer(ingest_tenant.ingest_key),
                    timeout=0.3,
                )
            )
            assert code in {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}
            assert time.monotonic() - started < 1.5
    finally:
        running.stop()
