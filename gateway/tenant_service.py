"""`magnetar.v1.TenantService`: proto in, `tenants.admin.TenantAdmin` (the domain), proto out.

Served by the admin plane only (gateway.admin_server), never by the public gateway: it needs
the Pulsar superuser token and the broker's token signing key. Onboarding talks to Pulsar's
admin API and PostgreSQL with blocking clients, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import Scope
from magnetar.v1 import tenant_service_pb2 as pb
from magnetar.v1 import tenant_service_pb2_grpc
from tenants.admin import TenantAdmin
from tenants.model import (
    IssuedKey,
    StepState,
    TenantChanges,
    TenantRecord,
    TenantState,
    TenantView,
)
from tenants.plans import QUOTA_FIELDS, Quotas

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TenantService"].full_name

_SCOPES = {
    Scope.INGEST: pb.API_KEY_SCOPE_INGEST,
    Scope.READ: pb.API_KEY_SCOPE_READ,
    Scope.ADMIN: pb.API_KEY_SCOPE_ADMIN,
    Scope.MANAGE: pb.API_KEY_SCOPE_MANAGE,
}
_SCOPES_BACK = {value: scope for scope, value in _SCOPES.items()}
_TENANT_STATES = {
    TenantState.PROVISIONING: pb.TENANT_STATE_PROVISIONING,
    TenantState.ACTIVE: pb.TENANT_STATE_ACTIVE,
    TenantState.FAILED: pb.TENANT_STATE_FAILED,
    TenantState.DELETING: pb.TENANT_STATE_DELETING,
}
_STEP_STATES = {
    StepState.PENDING: pb.STEP_STATE_PENDING,
    StepState.DONE: pb.STEP_STATE_DONE,
    StepState.FAILED: pb.STEP_STATE_FAILED,
}


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    # PostgreSQL stores UTC without a zone (see the migrations).
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def _quotas(quotas: Quotas | None) -> pb.TenantQuotas | None:
    return None if quotas is None else pb.TenantQuotas(**quotas.as_dict())


def _tenant(record: TenantRecord, view: TenantView | None = None) -> pb.Tenant:
    message = pb.Tenant(
        tenant_id=record.tenant_id,
        display_name=record.spec.display_name,
        plan=record.spec.plan,
        quotas=_quotas(record.spec.quotas),
        state=_TENANT_STATES[record.state],
        provisioning_steps=[
            pb.ProvisioningStep(
                name=step.name,
                state=_STEP_STATES[step.state],
                message=step.message,
                update_time=_timestamp(step.updated_at),
            )
            for step in record.steps
        ],
        create_time=_timestamp(record.created_at),
        update_time=_timestamp(record.updated_at),
        allowed_origins=record.spec.allowed_origins,
    )
    if view is not None:
        message.functions.extend(
            pb.FunctionStatus(
                name=f.name,
                running_instances=f.running_instances,
                instances=f.instances,
                last_error=f.last_error,
            )
            for f in view.functions
        )
        message.backlogs.extend(
            pb.SubscriptionBacklog(topic=b.topic, subscription=b.subscription, backlog=b.backlog)
            for b in view.backlogs
        )
    return message


def _api_key(key: StoredKey) -> pb.ApiKey:
    return pb.ApiKey(
        key_id=key.key_id,
        tenant_id=key.tenant_id,
        scopes=sorted(_SCOPES[s] for s in key.scopes),
        description=key.description,
        create_time=_timestamp(key.created_at),
        revoke_time=_timestamp(key.revoked_at),
    )


def _secret(issued: IssuedKey) -> pb.ApiKeySecret:
    return pb.ApiKeySecret(api_key=_api_key(issued.stored), secret=issued.minted.secret)


class TenantService(tenant_service_pb2_grpc.TenantServiceServicer):
    def __init__(self, admin: TenantAdmin, workers: int = 4) -> None:
        self._admin = admin
        # Threads of its own: a few slow onboardings (seconds each) must not take the
        # default executor's threads from the serving path's database reads.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenants")

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: Any
    ) -> pb.CreateTenantResponse:
        # Unset (zero) quotas keep the plan's values (proto3 has no presence on scalars).
        overrides = {f: getattr(request.quotas, f) for f in QUOTA_FIELDS}
        onboarded = await self._run(
            self._admin.create,
            request.tenant_id,
            request.display_name,
            request.plan,
            {name: value for name, value in overrides.items() if value},
        )
        return pb.CreateTenantResponse(
            tenant=_tenant(onboarded.record),
            ingest_key=_secret(onboarded.ingest_key),
            read_key=_secret(onboarded.read_key),
        )

    async def GetTenant(self, request: pb.GetTenantRequest, context: Any) -> pb.GetTenantResponse:
        view = await self._run(self._admin.get, request.tenant_id)
        return pb.GetTenantResponse(tenant=_tenant(view.record, view))

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: Any
    ) -> pb.ListTenantsResponse:
        page = await self._run(self._admin.list_tenants, request.page_size, request.page_token)
        return pb.ListTenantsResponse(
            tenants=[_tenant(r) for r in page.tenants], next_page_token=page.next_page_token
        )

    async def UpdateTenant(
        self, request: pb.UpdateTenantRequest, context: Any
    ) -> pb.UpdateTenantResponse:
        changes = TenantChanges(
            paths=list(request.update_mask.paths),
            display_name=request.tenant.display_name,
            plan=request.tenant.plan,
            quotas={f: getattr(request.tenant.quotas, f) for f in QUOTA_FIELDS},
            allowed_origins=list(request.tenant.allowed_origins),
        )
        record = await self._run(self._admin.update, request.tenant.tenant_id, changes)
        return pb.UpdateTenantResponse(tenant=_tenant(record))

    async def DeleteTenant(
        self, request: pb.DeleteTenantRequest, context: Any
    ) -> pb.DeleteTenantResponse:
        removed = await self._run(self._admin.delete, request.tenant_id)
        return pb.DeleteTenantResponse(removed=removed)

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Any
    ) -> pb.CreateApiKeyResponse:
        scopes = [_SCOPES_BACK.get(s) for s in request.scopes]
        issued = await self._run(
            self._admin.create_key, request.tenant_id, scopes, request.description
        )
        return pb.CreateApiKeyResponse(api_key=_secret(issued))

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Any
    ) -> pb.ListApiKeysResponse:
        page = await self._run(
            self._admin.list_keys,
            request.tenant_id,
            request.page_size,
            request.page_token,
            request.include_revoked,
        )
        return pb.ListApiKeysResponse(
            api_keys=[_api_key(k) for k in page.keys], next_page_token=page.next_page_token
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Any
    ) -> pb.RevokeApiKeyResponse:
        key = await self._run(self._admin.revoke_key, request.tenant_id, request.key_id)
        return pb.RevokeApiKeyResponse(api_key=_api_key(key))
