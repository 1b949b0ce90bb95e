"""The one writer of a tenant's compacted catalog topic, which the pipeline reads as a table.

Records are `magnetar.v1.Item` under the PROTOBUF_NATIVE schema onboarding registers
(`tenants.pulsar_setup`), keyed by item id: what compaction keeps the latest record of and
what the pipeline's catalog view goes by. An empty `Item` serializes to no bytes at all, the
tombstone that deletes an item. `write` returns only once the broker has acknowledged every
record; otherwise it raises `Unavailable`, or `FailedPrecondition` for a tenant without a
catalog topic.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import pulsar
from pulsar.schema import ProtobufNativeSchema

from magnetar.errors import FailedPrecondition, Unavailable
from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2

log = logging.getLogger(__name__)

SEND_TIMEOUT_MS = 5_000


def item_schema() -> ProtobufNativeSchema:
    """The catalog topic's schema (one per producer: the client attaches itself to it)."""
    return ProtobufNativeSchema(catalog_service_pb2.Item)


def write(
    client: pulsar.Client,
    tenant_id: str,
    records: Sequence[tuple[str, catalog_service_pb2.Item]],
    *,
    send_timeout_ms: int = SEND_TIMEOUT_MS,
) -> None:
    """Write (key, item) records to the tenant's catalog topic and wait for every ack."""
    producer = _open_producer(client, tenant_id, send_timeout_ms)
    acks = _Acks(len(records))
    try:
        for key, item in records:
            producer.send_async(item, acks.callback, partition_key=key)
        producer.flush()
    except Exception as error:
        raise Unavailable(
            f"Pulsar refused catalog records: {error}", reason="PULSAR_CATALOG_WRITE_FAILED"
        ) from error
    finally:
        _close_quietly(producer)
    acks.wait(send_timeout_ms / 1000 + 1)


def publish_items(
    client: pulsar.Client, tenant_id: str, items: Iterable[catalog_service_pb2.Item]
) -> int:
    """Upsert `items` (each under its item id); returns how many were written."""
    records = [(item.item_id, item) for item in items]
    write(client, tenant_id, records)
    return len(records)


def tombstone(item_id: str) -> tuple[str, catalog_service_pb2.Item]:
    """The record that deletes `item_id`: its key and an empty item (no bytes)."""
    return item_id, catalog_service_pb2.Item()


def _open_producer(client: pulsar.Client, tenant_id: str, send_timeout_ms: int) -> Any:
    topic = TenantTopics(tenant_id).catalog
    try:
        return client.create_producer(
            topic,
            schema=item_schema(),
            send_timeout_millis=send_timeout_ms,
            batching_enabled=True,
            batching_max_publish_delay_ms=1,
            # A catalog larger than the pending queue waits for room instead of failing.
            block_if_queue_full=True,
        )
    except pulsar.TopicNotFound as error:
        raise FailedPrecondition(
            f"tenant {tenant_id!r} has no catalog topic; onboard it first",
            reason="TENANT_NOT_PROVISIONED",
        ) from error
    except Exception as error:
        raise Unavailable(
            f"cannot open a producer on {topic}: {error}", reason="PULSAR_UNAVAILABLE"
        ) from error


class _Acks:
    """Counts send callbacks (on Pulsar's thread) until every record is acknowledged."""

    def __init__(self, count: int) -> None:
        self._remaining = count
        self._failures: list[Any] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        if count == 0:
            self._done.set()

    def callback(self, result: Any, _message_id: Any = None) -> None:
        with self._lock:
            if result != pulsar.Result.Ok:
                self._failures.append(result)
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()

    def wait(self, timeout_s: float) -> None:
        if not self._done.wait(timeout_s):
            raise Unavailable("Pulsar did not acknowledge the catalog records in time")
        if self._failures:
            raise Unavailable(
                f"Pulsar refused catalog records: {self._failures[0]}",
                reason="PULSAR_CATALOG_WRITE_FAILED",
            )


def _close_quietly(producer: Any) -> None:
    try:
        producer.close()
    except Exception:  # the records' fate is known from their acks; closing is tidying up
        log.warning("closing a catalog producer failed", exc_info=True)
