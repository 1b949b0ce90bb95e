"""A tenant's Pulsar side: tenant, namespaces with policies, topics, schemas.

Every step is idempotent (see `PulsarAdmin`), so provisioning can be repeated after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from magnetar.protobuf_schema import ProtobufNativeSchema
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2, enriched_event_pb2, events_pb2


@dataclass(frozen=True)
class NamespacePolicies:
    """Policies every tenant namespace gets; the plan sets the publish rate."""

    retention_minutes: int = 7 * 24 * 60
    retention_size_mb: int = 20_480
    # producer_request_hold: at the quota producers are held, never is data evicted.
    # Pulsar requires the quota to stay below the retention size.
    backlog_quota_bytes: int = 8 * 1024**3
    schema_compatibility: str = "BACKWARD_TRANSITIVE"
    publish_rate_messages_per_s: int = -1
    publish_rate_bytes_per_s: int = -1


PARTITIONS = 2


def provision_pulsar(
    admin: PulsarAdmin,
    tenant: str,
    *,
    policies: NamespacePolicies | None = None,
    tenant_role: str | None = None,
) -> TenantTopics:
    policies = policies or NamespacePolicies()
    topics = TenantTopics(tenant)
    admin.create_tenant(tenant)
    for namespace in (topics.events_namespace, topics.catalog_namespace):
        admin.create_namespace(namespace)
        admin.set_deduplication(namespace, True)
        admin.set_retention(
            namespace, minutes=policies.retention_minutes, size_mb=policies.retention_size_mb
        )
        admin.set_backlog_quota(namespace, limit_bytes=policies.backlog_quota_bytes)
        admin.set_schema_compatibility(namespace, policies.schema_compatibility)
        if policies.publish_rate_messages_per_s > 0:
            admin.set_publish_rate(
                namespace,
                messages_per_s=policies.publish_rate_messages_per_s,
                bytes_per_s=policies.publish_rate_bytes_per_s,
            )
        if tenant_role:
            admin.grant_namespace_permission(namespace, tenant_role, ("produce", "consume"))
    for topic in (topics.raw, topics.deduped, topics.enriched):
        admin.create_partitioned_topic(topic, PARTITIONS)
    admin.create_topic(topics.dlq)
    admin.create_topic(topics.catalog)
    # Compact the catalog often so the table view starts from one record per item.
    admin.set_compaction_threshold(topics.catalog_namespace, 1024 * 1024)
    for topic, message in (
        (topics.raw, events_pb2.Event),
        (topics.deduped, events_pb2.Event),
        (topics.enriched, enriched_event_pb2.EnrichedEvent),
        (topics.catalog, catalog_service_pb2.Item),
    ):
        schema_type, definition = ProtobufNativeSchema(message).admin_payload()
        admin.upload_schema(topic, schema_type, definition)
    return topics
