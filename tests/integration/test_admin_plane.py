"""The admin plane apart from the public gateway, on the real broker (auth on) and PostgreSQL.

The public gateway is built as the chart runs it: no superuser token file, no token signing
key, no platform admin key. It answers UNIMPLEMENTED to TenantService; the admin plane, on its
own listener, onboards a tenant; the public gateway then ingests that tenant's events with the
producer token the admin plane stored, and they reach the tenant's raw topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from magnetar.pulsar_tokens import tenant_role, token_role
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from magnetar.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    events_pb2,
    tenant_service_pb2_grpc,
)
from magnetar.v1 import tenant_service_pb2 as pb
from tests.integration.gateway_harness import (
    RunningAdmin,
    RunningGateway,
    read_all,
)

pytestmark = pytest.mark.integration


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture(scope="module")
def public_gateway(settings: Settings) -> Iterator[RunningGateway]:
    """Only what the chart gives the public gateway: the database URL and Pulsar's address."""
    bare = settings.merged(
        {
            "grpc_port": 0,
            "admin_api_key": "",
            "pulsar_admin_token_file": "/nonexistent/superuser-token",
            "pulsar_token_secret_key_file": "/nonexistent/secret.key",
        }
    )
    running = RunningGateway(bare)
    yield running
    running.stop()


@pytest.fixture
def tenant_id(admin_plane: RunningAdmin, admin_key: str) -> Iterator[str]:
    name = f"ap-{uuid.uuid4().hex[:10]}"
    yield name
    with grpc.insecure_channel(admin_plane.address) as channel:
        try:
            tenant_service_pb2_grpc.TenantServiceStub(channel).DeleteTenant(
                pb.DeleteTenantRequest(tenant_id=name), metadata=bearer(admin_key), timeout=120
            )
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND


def test_the_public_gateway_has_no_tenant_service(
    public_gateway: RunningGateway, admin_key: str
) -> None:
    with grpc.insecure_channel(public_gateway.address) as channel:
        stub = tenant_service_pb2_grpc.TenantServiceStub(channel)
        for key in (admin_key, "mgk.anything"):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListTenants(pb.ListTenantsRequest(), metadata=bearer(key), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_admin_plane_onboards_and_the_public_gateway_ingests_with_the_stored_token(
    settings: Settings,
    admin_plane: RunningAdmin,
    public_gateway: RunningGateway,
    admin_key: str,
    tenant_id: str,
) -> None:
    with grpc.insecure_channel(admin_plane.address) as channel:
        tenants = tenant_service_pb2_grpc.TenantServiceStub(channel)
        created = tenants.CreateTenant(
            pb.CreateTenantRequest(tenant_id=tenant_id, display_name="Admin plane test"),
            metadata=bearer(admin_key),
            timeout=120,
        )
        # A tenant key means nothing to the admin plane.
        with pytest.raises(grpc.RpcError) as refused:
            tenants.GetTenant(
                pb.GetTenantRequest(tenant_id=tenant_id),
                metadata=bearer(created.ingest_key.secret),
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert created.tenant.state == pb.TENANT_STATE_ACTIVE
    # What the public gateway reads: the tenant's own role, signed by the admin plane.
    credentials = public_gateway.server.adapters.credentials
    assert credentials is not None
    key = Path(settings.pulsar_token_secret_key_file).read_bytes()
    assert token_role(credentials.token_for(tenant_id), key) == tenant_role(tenant_id)

    event = events_pb2.Event(event_id="e-1", user_id="u-1", item_id="sku-1")
    event.type = events_pb2.EVENT_TYPE_VIEW
    event.occurred_at.GetCurrentTime()
    with grpc.insecure_channel(public_gateway.address) as channel:
        reply = event_service_pb2_grpc.EventServiceStub(channel).Ingest(
            event_service_pb2.IngestRequest(events=[event]),
            metadata=bearer(created.ingest_key.secret),
            timeout=30,
        )
    assert reply.accepted_count == 1
    (message,) = read_all(settings, TenantTopics(tenant_id).raw, expect=1)
    assert events_pb2.Event.FromString(message.data()).event_id == "e-1"
    # Offboarding runs in the admin plane: the gateway's producer is closed first here only
    # to keep the teardown quiet.
    public_gateway.run(public_gateway.server.adapters.publisher.close_tenant(tenant_id))
