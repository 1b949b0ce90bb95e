"""A tenant's Pulsar side, step by step: tenant, namespaces with policies, role, topics, schemas.

Each step reads what exists and changes only what differs, so any can be repeated after a
crash and `UpdateTenant` re-applies the policies with the same code; an existing
partitioned topic keeps its partition count. `provision_pulsar` runs them all, for tests,
benchmarks and the demo (docs/tenants.md, "What onboarding creates").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from google.protobuf.message import Message
from pulsar.schema import ProtobufNativeSchema

from magnetar import raw_events
from magnetar.pulsar_tokens import tenant_role
from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2, events_pb2
from tenants.plans import PLANS, Quotas
from tenants.ports import PulsarAdminPort

SCHEMA_COMPATIBILITY = "BACKWARD_TRANSITIVE"
BACKLOG_POLICY = "producer_request_hold"
ROLE_ACTIONS = ("consume", "produce")
# Compact the catalog often so enrich's table view starts from one record per item.
CATALOG_COMPACTION_THRESHOLD = 1024 * 1024

# What ad hoc provisioning (tests, benchmarks, the demo) gets: the standard plan's
# retention without a Pulsar publish rate, as before plans existed.
UNTHROTTLED = replace(PLANS["standard"], publish_messages_per_second=0, publish_bytes_per_second=0)


def tenant_namespaces(topics: TenantTopics) -> tuple[str, str]:
    return topics.events_namespace, topics.catalog_namespace


def schemas(topics: TenantTopics) -> list[tuple[str, type[Message]]]:
    """Every topic with a registered schema, and its message."""
    return [
        (topics.raw, events_pb2.Event),
        (topics.imports, events_pb2.Event),
        (topics.catalog, catalog_service_pb2.Item),
    ]


def ensure_tenant(admin: PulsarAdminPort, tenant: str) -> None:
    # No admin roles: a tenant's own role must never change its policies or grants.
    admin.create_tenant(tenant, admin_roles=())


def _publish_rate(policies: dict[str, Any]) -> tuple[int, int]:
    """(messages/s, bytes/s) in force, 0 for none (Pulsar stores -1 or omits it)."""
    for rate in (policies.get("publishMaxMessageRate") or {}).values():
        return (
            max(0, int(rate.get("publishThrottlingRateInMsg", -1))),
            max(0, int(rate.get("publishThrottlingRateInByte", -1))),
        )
    return 0, 0


def _backlog_limit(policies: dict[str, Any]) -> tuple[int, str]:
    quota = (policies.get("backlog_quota_map") or {}).get("destination_storage") or {}
    return int(quota.get("limitSize", quota.get("limit", 0)) or 0), str(quota.get("policy", ""))


def ensure_namespace_policies(admin: PulsarAdminPort, namespace: str, quotas: Quotas) -> list[str]:
    """Set the namespace's policies to what `quotas` asks; returns the names of those changed."""
    current = admin.namespace_policies(namespace)
    changed: list[str] = []
    if current.get("deduplicationEnabled") is not True:
        admin.set_deduplication(namespace, True)
        changed.append("deduplication")

    retention = current.get("retention_policies") or {}
    wanted_retention = (quotas.retention_minutes, quotas.retention_size_mb)
    retention_differs = (
        int(retention.get("retentionTimeInMinutes", 0)),
        int(retention.get("retentionSizeInMB", 0)),
    ) != wanted_retention
    backlog, policy = _backlog_limit(current)
    backlog_differs = (backlog, policy) != (quotas.backlog_quota_bytes, BACKLOG_POLICY)

    def set_retention() -> None:
        admin.set_retention(
            namespace, minutes=quotas.retention_minutes, size_mb=quotas.retention_size_mb
        )
        changed.append("retention")

    def set_backlog() -> None:
        admin.set_backlog_quota(namespace, limit_bytes=quotas.backlog_quota_bytes)
        changed.append("backlog_quota")

    # Pulsar keeps the backlog quota below the retention size after every call. Growing the
    # retention first works unless it shrinks below the current backlog quota; then
    # shrinking the backlog quota first works (the two cannot both fail, see docs/tenants.md).
    if retention_differs and quotas.retention_size_mb * 1024 * 1024 > backlog:
        set_retention()
        if backlog_differs:
            set_backlog()
    else:
        if backlog_differs:
            set_backlog()
        if retention_differs:
            set_retention()

    if current.get("schema_compatibility_strategy") != SCHEMA_COMPATIBILITY:
        admin.set_schema_compatibility(namespace, SCHEMA_COMPATIBILITY)
        changed.append("schema_compatibility")
    wanted_rate = (quotas.publish_messages_per_second, quotas.publish_bytes_per_second)
    if _publish_rate(current) != wanted_rate:
        # -1 is Pulsar's "no limit" for either dimension.
        admin.set_publish_rate(
            namespace,
            messages_per_s=wanted_rate[0] or -1,
            bytes_per_s=wanted_rate[1] or -1,
        )
        changed.append("publish_rate")
    return changed


def ensure_namespaces(admin: PulsarAdminPort, topics: TenantTopics, quotas: Quotas) -> None:
    existing = set(admin.namespaces(topics.tenant))
    for namespace in tenant_namespaces(topics):
        if namespace not in existing:
            admin.create_namespace(namespace)
        ensure_namespace_policies(admin, namespace, quotas)


def ensure_role(
    admin: PulsarAdminPort, topics: TenantTopics, role: str, actions: Sequence[str] = ROLE_ACTIONS
) -> None:
    """Grant `role` produce and consume on the tenant's namespaces, and nothing else."""
    for namespace in tenant_namespaces(topics):
        granted = admin.namespace_permissions(namespace).get(role, [])
        if sorted(granted) != sorted(actions):
            admin.grant_namespace_permission(namespace, role, actions)


def _ensure_partitioned(admin: PulsarAdminPort, topic: str, partitions: int) -> None:
    if admin.partitions(topic) is None:
        admin.create_partitioned_topic(topic, partitions)


def ensure_import_topic(admin: PulsarAdminPort, topics: TenantTopics) -> None:
    """The import topic (imported history), partitioned and with its schema like raw; also
    called before deploying the pipeline, so a tenant onboarded before imports existed gets it
    before the Function subscribes (the broker must not auto-create a plain topic)."""
    _ensure_partitioned(admin, topics.imports, raw_events.DEFAULT_PARTITIONS)
    schema_type, definition = schema_payload(events_pb2.Event)
    if not _same_schema(admin.get_schema(topics.imports), schema_type, definition):
        admin.upload_schema(topics.imports, schema_type, definition)


def ensure_topics(admin: PulsarAdminPort, topics: TenantTopics) -> None:
    _ensure_partitioned(admin, topics.raw, raw_events.DEFAULT_PARTITIONS)
    _ensure_partitioned(admin, topics.imports, raw_events.DEFAULT_PARTITIONS)
    existing = set(admin.topics(topics.events_namespace)) | set(
        admin.topics(topics.catalog_namespace)
    )
    for topic in (topics.dlq, topics.catalog):
        if topic not in existing:
            admin.create_topic(topic)
    admin.set_compaction_threshold(topics.catalog_namespace, CATALOG_COMPACTION_THRESHOLD)


def schema_payload(message: type[Message]) -> tuple[str, str]:
    """(type, definition) of `message`'s PROTOBUF_NATIVE schema, as the admin API takes them."""
    return raw_events.SCHEMA_TYPE, str(ProtobufNativeSchema(message).schema_info().schema())


def _same_schema(current: dict[str, Any] | None, schema_type: str, definition: str) -> bool:
    if current is None or current.get("type") != schema_type:
        return False
    try:
        return bool(json.loads(str(current.get("data", ""))) == json.loads(definition))
    except ValueError:
        return False


def ensure_schemas(admin: PulsarAdminPort, topics: TenantTopics) -> None:
    for topic, message in schemas(topics):
        schema_type, definition = schema_payload(message)
        if not _same_schema(admin.get_schema(topic), schema_type, definition):
            admin.upload_schema(topic, schema_type, definition)


def provision_pulsar(
    admin: PulsarAdminPort,
    tenant: str,
    *,
    quotas: Quotas = UNTHROTTLED,
    role: str | None = None,
) -> TenantTopics:
    """Every Pulsar step of onboarding at once; safe to repeat."""
    topics = TenantTopics(tenant)
    ensure_tenant(admin, tenant)
    ensure_namespaces(admin, topics, quotas)
    ensure_role(admin, topics, role or tenant_role(tenant))
    ensure_topics(admin, topics)
    ensure_schemas(admin, topics)
    return topics
