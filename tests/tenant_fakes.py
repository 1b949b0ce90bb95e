"""In-memory fakes of the reconciler's ports, for unit tests (no I/O, no threads of their own).

They keep the rules of the real systems that onboarding depends on: a namespace needs its
tenant, a topic its namespace; Pulsar refuses a backlog quota that reaches the retention
size; creates are idempotent; a force delete removes everything under it. `fail` makes the
next calls of a method raise, to play a crash at any step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import NewKey, Scope, mint_key
from magnetar.errors import NotFound
from magnetar.topics import PIPELINE_FUNCTIONS
from tenants.model import (
    FunctionHealth,
    StepState,
    StepStatus,
    TenantRecord,
    TenantSpec,
    TenantState,
    pending_steps,
)
from tenants.ports import LeaseTaken, PendingKey


class FakeAdminError(Exception):
    """What the fake answers where Pulsar would answer an HTTP error."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status


class Faults:
    """Scheduled failures: `fail("create_topic")` makes the next call of it raise."""

    def __init__(self) -> None:
        self._pending: dict[str, list[Exception]] = {}
        self.calls: list[str] = []

    def fail(self, method: str, error: Exception | None = None, times: int = 1) -> None:
        self._pending.setdefault(method, []).extend(
            [error or ConnectionError(f"injected failure of {method}")] * times
        )

    def check(self, method: str) -> None:
        self.calls.append(method)
        pending = self._pending.get(method)
        if pending:
            raise pending.pop(0)


def _namespace_of(topic: str) -> str:
    return topic.split("://", 1)[1].rsplit("/", 1)[0]


@dataclass
class FakeNamespace:
    policies: dict[str, Any] = field(default_factory=dict)
    permissions: dict[str, list[str]] = field(default_factory=dict)


class FakePulsarAdmin:
    """Pulsar's admin API as a dictionary; satisfies `tenants.ports.PulsarAdminPort`."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.pulsar_tenants: dict[str, list[str]] = {"public": [], "pulsar": []}
        self.ns: dict[str, FakeNamespace] = {}
        self.partitioned: dict[str, int] = {}
        self.plain_topics: set[str] = set()
        self.schema_uploads: dict[str, list[tuple[str, str]]] = {}
        self.subscriptions: dict[str, dict[str, int]] = {}
        self.compaction: dict[str, int] = {}

    def _namespace(self, namespace: str) -> FakeNamespace:
        if namespace not in self.ns:
            raise FakeAdminError(404, f"namespace {namespace} not found")
        return self.ns[namespace]

    def tenants(self) -> list[str]:
        self.faults.check("tenants")
        return sorted(self.pulsar_tenants)

    def create_tenant(self, tenant: str, *, admin_roles: Sequence[str] = ()) -> None:
        self.faults.check("create_tenant")
        self.pulsar_tenants[tenant] = sorted(admin_roles)

    def delete_tenant(self, tenant: str) -> None:
        self.faults.check("delete_tenant")
        for namespace in self.namespaces(tenant):
            self.delete_namespace(namespace)
        self.pulsar_tenants.pop(tenant, None)

    def namespaces(self, tenant: str) -> list[str]:
        self.faults.check("namespaces")
        return sorted(n for n in self.ns if n.split("/")[0] == tenant)

    def create_namespace(self, namespace: str) -> None:
        self.faults.check("create_namespace")
        if namespace.split("/")[0] not in self.pulsar_tenants:
            raise FakeAdminError(404, "tenant does not exist")
        self.ns.setdefault(namespace, FakeNamespace())

    def delete_namespace(self, namespace: str) -> None:
        self.faults.check("delete_namespace")
        self.ns.pop(namespace, None)
        for topic in self.topics(namespace):
            self.partitioned.pop(topic, None)
            self.plain_topics.discard(topic)
            self.schema_uploads.pop(topic, None)
            self.subscriptions.pop(topic, None)

    def namespace_policies(self, namespace: str) -> dict[str, Any]:
        self.faults.check("namespace_policies")
        return dict(self._namespace(namespace).policies)

    def _set(self, namespace: str, key: str, value: Any) -> None:
        self._namespace(namespace).policies[key] = value

    def set_deduplication(self, namespace: str, enabled: bool) -> None:
        self.faults.check("set_deduplication")
        self._set(namespace, "deduplicationEnabled", enabled)

    def set_retention(self, namespace: str, *, minutes: int, size_mb: int) -> None:
        self.faults.check("set_retention")
        backlog = self._namespace(namespace).policies.get("backlog_quota_map", {})
        limit = backlog.get("destination_storage", {}).get("limitSize", 0)
        if size_mb > 0 and limit >= size_mb * 1024 * 1024:
            raise FakeAdminError(412, "Retention Quota must exceed configured backlog quota")
        self._set(
            namespace,
            "retention_policies",
            {"retentionTimeInMinutes": minutes, "retentionSizeInMB": size_mb},
        )

    def set_backlog_quota(
        self, namespace: str, *, limit_bytes: int, policy: str = "producer_request_hold"
    ) -> None:
        self.faults.check("set_backlog_quota")
        retention = self._namespace(namespace).policies.get("retention_policies", {})
        size_mb = retention.get("retentionSizeInMB", 0)
        if size_mb > 0 and limit_bytes >= size_mb * 1024 * 1024:
            raise FakeAdminError(412, "Backlog Quota exceeds configured retention quota")
        self._set(
            namespace,
            "backlog_quota_map",
            {"destination_storage": {"limitSize": limit_bytes, "limitTime": -1, "policy": policy}},
        )

    def set_schema_compatibility(self, namespace: str, strategy: str) -> None:
        self.faults.check("set_schema_compatibility")
        self._set(namespace, "schema_compatibility_strategy", strategy)

    def set_publish_rate(self, namespace: str, *, messages_per_s: int, bytes_per_s: int) -> None:
        self.faults.check("set_publish_rate")
        self._set(
            namespace,
            "publishMaxMessageRate",
            {
                "standalone": {
                    "publishThrottlingRateInMsg": messages_per_s,
                    "publishThrottlingRateInByte": bytes_per_s,
                }
            },
        )

    def grant_namespace_permission(
        self, namespace: str, role: str, actions: Sequence[str] = ("produce", "consume")
    ) -> None:
        self.faults.check("grant_namespace_permission")
        self._namespace(namespace).permissions[role] = sorted(actions)

    def namespace_permissions(self, namespace: str) -> dict[str, list[str]]:
        self.faults.check("namespace_permissions")
        return dict(self._namespace(namespace).permissions)

    def partitions(self, topic: str) -> int | None:
        self.faults.check("partitions")
        self._namespace(_namespace_of(topic))
        return self.partitioned.get(topic)

    def create_partitioned_topic(self, topic: str, partitions: int) -> None:
        self.faults.check("create_partitioned_topic")
        self._namespace(_namespace_of(topic))
        current = self.partitioned.setdefault(topic, partitions)
        if current != partitions:
            raise FakeAdminError(409, f"exists with {current} partitions")

    def create_topic(self, topic: str) -> None:
        self.faults.check("create_topic")
        self._namespace(_namespace_of(topic))
        self.plain_topics.add(topic)

    def topics(self, namespace: str) -> list[str]:
        self.faults.check("topics")
        everything = set(self.partitioned) | self.plain_topics
        return sorted(t for t in everything if _namespace_of(t) == namespace)

    def topic_stats(self, topic: str, *, partitioned: bool) -> dict[str, Any]:
        self.faults.check("topic_stats")
        subscriptions = self.subscriptions.get(topic, {})
        return {"subscriptions": {n: {"msgBacklog": b} for n, b in subscriptions.items()}}

    def set_compaction_threshold(self, namespace: str, threshold_bytes: int) -> None:
        self.faults.check("set_compaction_threshold")
        self._namespace(namespace)
        self.compaction[namespace] = threshold_bytes

    def upload_schema(
        self,
        topic: str,
        schema_type: str,
        definition: str,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.faults.check("upload_schema")
        self._namespace(_namespace_of(topic))
        self.schema_uploads.setdefault(topic, []).append((schema_type, definition))

    def get_schema(self, topic: str) -> dict[str, Any] | None:
        self.faults.check("get_schema")
        uploads = self.schema_uploads.get(topic)
        if not uploads:
            return None
        schema_type, definition = uploads[-1]
        return {"type": schema_type, "data": definition, "version": len(uploads) - 1}


class FakeFunctionDeployer:
    """The functions worker as a set of deployed (tenant, function) names."""

    STAGES = PIPELINE_FUNCTIONS

    def __init__(self) -> None:
        self.faults = Faults()
        self.deployed: dict[str, set[str]] = {}
        self.deployments = 0

    def deploy(self, tenant_id: str) -> None:
        self.faults.check("deploy")
        current = self.deployed.setdefault(tenant_id, set())
        for stage in self.STAGES:
            if stage not in current:
                current.add(stage)
                self.deployments += 1

    def status(self, tenant_id: str) -> list[FunctionHealth]:
        self.faults.check("status")
        return [FunctionHealth(s, 1, 1) for s in sorted(self.deployed.get(tenant_id, ()))]

    def undeploy(self, tenant_id: str) -> list[str]:
        self.faults.check("undeploy")
        removed = sorted(self.deployed.pop(tenant_id, set()))
        return [f"function {tenant_id}/events/{name}" for name in removed]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class InMemoryTenantStore:
    """TenantStore over dictionaries. Rows of other tables are `rows[(table, tenant)]`."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.records: dict[str, TenantRecord] = {}
        self.keys: dict[tuple[str, str], StoredKey] = {}
        self.rows: dict[tuple[str, str], int] = {}
        self.producer_tokens: dict[str, str] = {}
        self._leases: set[str] = set()
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, tenant_id: str, wait_s: float = 0.0) -> Iterator[None]:
        with self._lock:
            if tenant_id in self._leases:
                raise LeaseTaken(tenant_id)
            self._leases.add(tenant_id)
        try:
            yield
        finally:
            with self._lock:
                self._leases.discard(tenant_id)

    def insert(self, spec: TenantSpec) -> TenantRecord | None:
        self.faults.check("insert")
        if spec.tenant_id in self.records:
            return None
        now = _now()
        record = TenantRecord(spec, TenantState.PROVISIONING, pending_steps(), now, now)
        self.records[spec.tenant_id] = record
        return record

    def get(self, tenant_id: str) -> TenantRecord | None:
        self.faults.check("get")
        return self.records.get(tenant_id)

    def page(self, after: str, limit: int) -> list[TenantRecord]:
        self.faults.check("list")
        return [self.records[t] for t in sorted(self.records) if t > after][:limit]

    def _change(self, tenant_id: str, **changes: Any) -> TenantRecord:
        record = replace(self.records[tenant_id], updated_at=_now(), **changes)
        self.records[tenant_id] = record
        return record

    def set_step(self, tenant_id: str, step: str, state: StepState, message: str = "") -> None:
        self.faults.check("set_step")
        steps = tuple(
            StepStatus(s.name, state, message, _now()) if s.name == step else s
            for s in self.records[tenant_id].steps
        )
        self._change(tenant_id, steps=steps)

    def set_state(self, tenant_id: str, state: TenantState) -> None:
        self.faults.check("set_state")
        self._change(tenant_id, state=state)

    def update_spec(self, spec: TenantSpec) -> TenantRecord:
        self.faults.check("update_spec")
        return self._change(spec.tenant_id, spec=spec)

    def activate(
        self, tenant_id: str, keys: Sequence[PendingKey]
    ) -> tuple[TenantRecord, list[StoredKey]]:
        self.faults.check("activate")
        stored = [self._store_key(k.minted, k.scopes, k.description) for k in keys]
        self.set_step(tenant_id, "keys", StepState.DONE)
        return self._change(tenant_id, state=TenantState.ACTIVE), stored

    def _store_key(self, minted: NewKey, scopes: Iterable[Scope], description: str) -> StoredKey:
        stored = StoredKey(
            minted.tenant_id,
            minted.key_id,
            minted.secret_sha256,
            frozenset(scopes),
            description,
            _now(),
            None,
        )
        self.keys[(minted.tenant_id, minted.key_id)] = stored
        return stored

    def set_producer_token(self, tenant_id: str, token: str) -> None:
        self.faults.check("set_producer_token")
        self.producer_tokens[tenant_id] = token

    def producer_token(self, tenant_id: str) -> str | None:
        return self.producer_tokens.get(tenant_id)

    def purge(self, tenant_id: str) -> list[str]:
        self.faults.check("purge")
        removed = []
        if self.producer_tokens.pop(tenant_id, None) is not None:
            removed.append("1 rows of producer_tokens")
        for table, tenant in sorted(self.rows):
            if tenant == tenant_id:
                removed.append(f"{self.rows.pop((table, tenant))} rows of {table}")
        keys = [k for k in self.keys if k[0] == tenant_id]
        for key in keys:
            del self.keys[key]
        if keys:
            removed.append(f"{len(keys)} rows of api_keys")
        if self.records.pop(tenant_id, None) is not None:
            removed.append(f"tenant row {tenant_id}")
        return removed


class InMemoryKeyStore:
    """KeyStore over the fake tenant store's keys, with the real store's rules."""

    def __init__(self, tenants: InMemoryTenantStore) -> None:
        self._tenants = tenants

    def create(
        self, tenant_id: str, scopes: Iterable[Scope], description: str = ""
    ) -> tuple[NewKey, StoredKey]:
        if tenant_id not in self._tenants.records:
            raise NotFound(f"tenant {tenant_id!r} does not exist", reason="TENANT_NOT_FOUND")
        minted = mint_key(tenant_id)
        return minted, self._tenants._store_key(minted, scopes, description)

    def list(self, tenant_id: str, *, include_revoked: bool = False) -> list[StoredKey]:
        keys = [k for (t, _), k in self._tenants.keys.items() if t == tenant_id]
        keys = [k for k in keys if include_revoked or not k.revoked]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id), reverse=True)

    def revoke(self, tenant_id: str, key_id: str) -> StoredKey:
        key = self._tenants.keys.get((tenant_id, key_id))
        if key is None:
            raise NotFound(f"tenant has no key {key_id!r}", reason="API_KEY_NOT_FOUND")
        if key.revoked_at is None:
            key = replace(key, revoked_at=_now())
            self._tenants.keys[(tenant_id, key_id)] = key
        return key
