"""`CatalogTopic` over Pulsar: items to each tenant's compacted catalog topic.

Keyed by item id, which is what compaction keeps the latest record of and what `enrich`'s
table view goes by; an empty payload is a tombstone. One client per tenant (it carries the
tenant's credentials), kept; one producer per write, closed once the broker has every
record: catalog writes are rare next to events, and a producer kept open for a tenant that
is later offboarded would look its topic up again and again. Blocking: called from the
catalog store's transaction on a worker thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pulsar

from gateway.catalog_proto import item_to_proto
from gateway.event_publisher import PulsarCredentials
from magnetar.errors import FailedPrecondition, Unavailable
from magnetar.protobuf_schema import ProtobufNativeSchema
from magnetar.pulsar_client import quiet_logger
from magnetar.serving.catalog import CatalogItem
from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2

log = logging.getLogger(__name__)


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


class PulsarCatalogTopic:
    def __init__(
        self,
        service_url: str,
        credentials: PulsarCredentials,
        *,
        send_timeout_ms: int = 5_000,
        operation_timeout_s: int = 5,
    ) -> None:
        self._service_url = service_url
        self._credentials = credentials
        self._send_timeout_ms = send_timeout_ms
        self._operation_timeout_s = operation_timeout_s
        self._clients: dict[str, pulsar.Client] = {}
        self._lock = threading.Lock()

    def publish(self, tenant_id: str, items: Sequence[CatalogItem]) -> None:
        self._send(tenant_id, [(item.item_id, item_to_proto(item)) for item in items])

    def tombstone(self, tenant_id: str, item_id: str) -> None:
        # An empty Item serializes to no bytes at all: the empty payload that compaction
        # and the table view read as "deleted".
        self._send(tenant_id, [(item_id, catalog_service_pb2.Item())])

    def _send(
        self, tenant_id: str, records: Sequence[tuple[str, catalog_service_pb2.Item]]
    ) -> None:
        producer = self._open_producer(tenant_id)
        acks = _Acks(len(records))
        try:
            for key, message in records:
                producer.send_async(message, acks.callback, partition_key=key)
            producer.flush()
        except Exception as error:
            raise Unavailable(
                f"Pulsar refused catalog records: {error}", reason="PULSAR_CATALOG_WRITE_FAILED"
            ) from error
        finally:
            _close_quietly(producer)
        acks.wait(self._send_timeout_ms / 1000 + 1)

    def _client(self, tenant_id: str) -> pulsar.Client:
        with self._lock:
            client = self._clients.get(tenant_id)
            if client is None:
                client = self._clients[tenant_id] = pulsar.Client(
                    self._service_url,
                    authentication=pulsar.AuthenticationToken(
                        self._credentials.token_for(tenant_id)
                    ),
                    operation_timeout_seconds=self._operation_timeout_s,
                    connection_timeout_ms=3_000,
                    logger=quiet_logger(),
                )
            return client

    def _open_producer(self, tenant_id: str) -> pulsar.Producer:
        topic = TenantTopics(tenant_id).catalog
        # Outside the try: a tenant without credentials is its own answer, not Pulsar's.
        client = self._client(tenant_id)
        try:
            return client.create_producer(
                topic,
                schema=ProtobufNativeSchema(catalog_service_pb2.Item),
                send_timeout_millis=self._send_timeout_ms,
                batching_enabled=True,
                batching_max_publish_delay_ms=1,
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

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()


def _close_quietly(producer: pulsar.Producer) -> None:
    try:
        producer.close()
    except Exception:  # the records' fate is known from their acks; closing is tidying up
        log.warning("closing a catalog producer failed", exc_info=True)
