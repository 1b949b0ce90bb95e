"""Writing catalog items to a tenant's compacted topic, which `enrich` reads as a table.

Keyed by item id so compaction keeps the latest version of each item; an empty payload is a
tombstone (the item is deleted from the view).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2


def catalog_topic(tenant_id: str) -> str:
    return TenantTopics(tenant_id).catalog


def publish_items(client: Any, tenant_id: str, items: Iterable[catalog_service_pb2.Item]) -> int:
    """Publish item upserts and wait until the broker has them; returns how many."""
    producer = client.create_producer(catalog_topic(tenant_id), batching_max_publish_delay_ms=5)
    count = 0
    try:
        for item in items:
            producer.send_async(item.SerializeToString(), None, partition_key=item.item_id)
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count


def publish_deletion(client: Any, tenant_id: str, item_id: str) -> None:
    producer = client.create_producer(catalog_topic(tenant_id))
    try:
        producer.send(b"", partition_key=item_id)
    finally:
        producer.close()
