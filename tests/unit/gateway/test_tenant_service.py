"""gateway.tenant_service: proto ↔ domain translation over in-memory ports (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from google.protobuf import field_mask_pb2

from gateway.tenant_service import TenantService
from magnetar.api_keys import parse_key
from magnetar.errors import InvalidArgument
from magnetar.v1 import tenant_service_pb2 as pb
from tenants.admin import TenantAdmin
from tenants.plans import PLANS
from tenants.reconciler import Reconciler
from tests.tenant_fakes import (
    FakeFunctionDeployer,
    FakePulsarAdmin,
    InMemoryKeyStore,
    InMemoryTenantStore,
)

T = TypeVar("T")


def run(call: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(call)


@pytest.fixture
def service() -> TenantService:
    store = InMemoryTenantStore()
    reconciler = Reconciler(FakePulsarAdmin(), store, FakeFunctionDeployer())
    return TenantService(TenantAdmin(reconciler, store, InMemoryKeyStore(store)))


def create(service: TenantService, **quotas: int) -> pb.CreateTenantResponse:
    request = pb.CreateTenantRequest(
        tenant_id="acme", display_name="Acme", plan="standard", quotas=pb.TenantQuotas(**quotas)
    )
    return run(service.CreateTenant(request, None))


def test_create_returns_the_tenant_and_two_working_keys_once(service: TenantService) -> None:
    reply = create(service, ingest_burst=123)

    tenant = reply.tenant
    assert tenant.state == pb.TENANT_STATE_ACTIVE
    assert [s.state for s in tenant.provisioning_steps] == [pb.STEP_STATE_DONE] * 7
    assert tenant.provisioning_steps[0].name == "pulsar_tenant"
    # Unset quotas keep the plan's values; set ones override.
    assert tenant.quotas.ingest_burst == 123
    assert tenant.quotas.ingest_events_per_second == PLANS["standard"].ingest_events_per_second
    assert list(reply.ingest_key.api_key.scopes) == [pb.API_KEY_SCOPE_INGEST]
    assert list(reply.read_key.api_key.scopes) == [pb.API_KEY_SCOPE_READ]
    parsed = parse_key(reply.ingest_key.secret)
    assert (parsed.tenant_id, parsed.key_id) == ("acme", reply.ingest_key.api_key.key_id)
    assert tenant.create_time.seconds > 0


def test_get_shows_functions_and_backlogs(service: TenantService) -> None:
    create(service)
    reply = run(service.GetTenant(pb.GetTenantRequest(tenant_id="acme"), None))
    assert [f.name for f in reply.tenant.functions] == ["pipeline"]
    assert all(f.running_instances == f.instances == 1 for f in reply.tenant.functions)


def test_update_follows_the_field_mask(service: TenantService) -> None:
    create(service)
    request = pb.UpdateTenantRequest(
        tenant=pb.Tenant(
            tenant_id="acme",
            display_name="ignored",
            quotas=pb.TenantQuotas(ingest_events_per_second=5, ingest_burst=999),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["quotas.ingest_events_per_second"]),
    )
    tenant = run(service.UpdateTenant(request, None)).tenant
    assert tenant.quotas.ingest_events_per_second == 5
    assert tenant.quotas.ingest_burst == PLANS["standard"].ingest_burst
    assert tenant.display_name == "Acme"


def test_keys_round_trip_and_unspecified_scopes_are_refused(service: TenantService) -> None:
    create(service)
    with pytest.raises(InvalidArgument):
        run(
            service.CreateApiKey(
                pb.CreateApiKeyRequest(tenant_id="acme", scopes=[pb.API_KEY_SCOPE_UNSPECIFIED]),
                None,
            )
        )
    with pytest.raises(InvalidArgument):
        run(
            service.CreateApiKey(
                pb.CreateApiKeyRequest(tenant_id="acme", scopes=[pb.API_KEY_SCOPE_ADMIN]), None
            )
        )
    made = run(
        service.CreateApiKey(
            pb.CreateApiKeyRequest(
                tenant_id="acme", scopes=[pb.API_KEY_SCOPE_READ], description="dashboards"
            ),
            None,
        )
    ).api_key
    listed = run(service.ListApiKeys(pb.ListApiKeysRequest(tenant_id="acme"), None))
    assert made.api_key.key_id in [k.key_id for k in listed.api_keys]
    assert all(not k.HasField("revoke_time") for k in listed.api_keys)
    revoked = run(
        service.RevokeApiKey(
            pb.RevokeApiKeyRequest(tenant_id="acme", key_id=made.api_key.key_id), None
        )
    ).api_key
    assert revoked.HasField("revoke_time")


def test_a_manage_key_can_be_created_and_lists_with_its_scope(service: TenantService) -> None:
    create(service)
    made = run(
        service.CreateApiKey(
            pb.CreateApiKeyRequest(tenant_id="acme", scopes=[pb.API_KEY_SCOPE_MANAGE]), None
        )
    ).api_key
    assert list(made.api_key.scopes) == [pb.API_KEY_SCOPE_MANAGE]
    listed = run(service.ListApiKeys(pb.ListApiKeysRequest(tenant_id="acme"), None)).api_keys
    assert [list(k.scopes) for k in listed if k.key_id == made.api_key.key_id] == [
        [pb.API_KEY_SCOPE_MANAGE]
    ]


def test_list_and_delete(service: TenantService) -> None:
    create(service)
    listed = run(service.ListTenants(pb.ListTenantsRequest(), None))
    assert [t.tenant_id for t in listed.tenants] == ["acme"] and not listed.next_page_token
    removed = run(service.DeleteTenant(pb.DeleteTenantRequest(tenant_id="acme"), None)).removed
    assert "pulsar tenant acme" in removed
    assert not run(service.ListTenants(pb.ListTenantsRequest(), None)).tenants


def test_allowed_origins_travel_the_update_and_the_tenant(service: TenantService) -> None:
    create(service)
    request = pb.UpdateTenantRequest(
        tenant=pb.Tenant(tenant_id="acme", allowed_origins=["https://Shop.Example:443"]),
        update_mask=field_mask_pb2.FieldMask(paths=["allowed_origins"]),
    )
    assert list(run(service.UpdateTenant(request, None)).tenant.allowed_origins) == [
        "https://shop.example"
    ]
    got = run(service.GetTenant(pb.GetTenantRequest(tenant_id="acme"), None)).tenant
    assert list(got.allowed_origins) == ["https://shop.example"]
