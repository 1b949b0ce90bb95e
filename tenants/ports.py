"""The ports the reconciler works through, as Protocols.

Real implementations: `magnetar.pulsar_admin.PulsarAdmin` (it satisfies `PulsarAdminPort`
as it is), `tenants.store.PostgresTenantStore`, `tenants.functions_deploy.PipelineDeployer`,
`magnetar.api_key_store.ApiKeyStore`. In-memory fakes for tests: `tests/tenant_fakes.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import NewKey, Scope
from tenants.model import (
    FunctionHealth,
    StepState,
    TenantRecord,
    TenantSpec,
    TenantState,
)


class LeaseTaken(Exception):
    """Someone else (another call, another gateway replica, the CLI) works on the tenant."""


class PulsarAdminPort(Protocol):
    """The admin calls onboarding and offboarding make; every create is idempotent."""

    def tenants(self) -> list[str]: ...
    def create_tenant(self, tenant: str, *, admin_roles: Sequence[str] = ()) -> None: ...
    def delete_tenant(self, tenant: str) -> None: ...
    def namespaces(self, tenant: str) -> list[str]: ...
    def create_namespace(self, namespace: str) -> None: ...
    def delete_namespace(self, namespace: str) -> None: ...
    def namespace_policies(self, namespace: str) -> dict[str, Any]: ...
    def set_deduplication(self, namespace: str, enabled: bool) -> None: ...
    def set_retention(self, namespace: str, *, minutes: int, size_mb: int) -> None: ...
    def set_backlog_quota(
        self, namespace: str, *, limit_bytes: int, policy: str = "producer_request_hold"
    ) -> None: ...
    def set_schema_compatibility(self, namespace: str, strategy: str) -> None: ...
    def set_publish_rate(
        self, namespace: str, *, messages_per_s: int, bytes_per_s: int
    ) -> None: ...
    def grant_namespace_permission(
        self, namespace: str, role: str, actions: Sequence[str] = ("produce", "consume")
    ) -> None: ...
    def namespace_permissions(self, namespace: str) -> dict[str, list[str]]: ...
    def partitions(self, topic: str) -> int | None: ...
    def create_partitioned_topic(self, topic: str, partitions: int) -> None: ...
    def create_topic(self, topic: str) -> None: ...
    def topics(self, namespace: str) -> list[str]: ...
    def topic_stats(self, topic: str, *, partitioned: bool) -> dict[str, Any]: ...
    def set_compaction_threshold(self, namespace: str, threshold_bytes: int) -> None: ...
    def upload_schema(
        self,
        topic: str,
        schema_type: str,
        definition: str,
        properties: Mapping[str, str] | None = None,
    ) -> None: ...
    def get_schema(self, topic: str) -> dict[str, Any] | None: ...


class FunctionDeployer(Protocol):
    """A tenant's pipeline functions on the functions worker."""

    def deploy(self, tenant_id: str) -> None:
        """Create missing functions and update ones that differ; leave matching ones alone."""

    def status(self, tenant_id: str) -> list[FunctionHealth]: ...

    def undeploy(self, tenant_id: str) -> list[str]:
        """Delete the tenant's functions and their state; one line per thing removed."""


@dataclass(frozen=True)
class PendingKey:
    """A key to store at activation: minted here, its hash stored, its secret returned."""

    minted: NewKey
    scopes: frozenset[Scope]
    description: str


class TenantStore(Protocol):
    """Desired state and step status, in PostgreSQL; the lease serialises work per tenant."""

    def lease(self, tenant_id: str, wait_s: float = 0.0) -> AbstractContextManager[None]:
        """Exclusive right to work on `tenant_id` while the context lasts; LeaseTaken if
        someone else holds it after `wait_s`. Released when the holder ends or dies."""

    def insert(self, spec: TenantSpec) -> TenantRecord | None:
        """A new PROVISIONING record with every step PENDING; None if the id exists."""

    def get(self, tenant_id: str) -> TenantRecord | None: ...

    def page(self, after: str, limit: int) -> list[TenantRecord]:
        """Up to `limit` records with ids greater than `after`, in id order."""

    def set_step(self, tenant_id: str, step: str, state: StepState, message: str = "") -> None: ...

    def set_state(self, tenant_id: str, state: TenantState) -> None: ...

    def update_spec(self, spec: TenantSpec) -> TenantRecord: ...

    def activate(
        self, tenant_id: str, keys: Sequence[PendingKey]
    ) -> tuple[TenantRecord, list[StoredKey]]:
        """Store `keys`, mark the `keys` step DONE and the tenant ACTIVE, in one transaction."""

    def set_producer_token(self, tenant_id: str, token: str) -> None:
        """Keep the tenant's Pulsar role token where the public gateway reads it."""

    def purge(self, tenant_id: str) -> list[str]:
        """Delete every row of the tenant in every tenant-scoped table, then its record;
        returns one line per table that had rows."""


class KeyStore(Protocol):
    """A tenant's API keys (`magnetar.api_key_store.ApiKeyStore`)."""

    def create(
        self, tenant_id: str, scopes: Iterable[Scope], description: str = ""
    ) -> tuple[NewKey, StoredKey]: ...

    def list(self, tenant_id: str, *, include_revoked: bool = False) -> list[StoredKey]: ...

    def revoke(self, tenant_id: str, key_id: str) -> StoredKey: ...


class OffboardingHook(Protocol):
    """Told before a tenant's Pulsar namespaces go (the gateway closes its producers)."""

    def __call__(self, tenant_id: str) -> None: ...
