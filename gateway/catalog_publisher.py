"""`CatalogTopic` over Pulsar: a tenant's catalog writes through `magnetar.catalog_topic`.

One client per tenant (it carries the tenant's credentials), kept; one producer per write,
closed once the broker has every record: catalog writes are rare next to events, and a
producer kept open for a tenant that is later offboarded would look its topic up again and
again. Blocking: called from the catalog store's transaction on a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pulsar

from gateway.catalog_proto import item_to_proto
from gateway.event_publisher import PulsarCredentials
from magnetar import catalog_topic
from magnetar.pulsar_client import quiet_logger
from magnetar.serving.catalog import CatalogItem
from magnetar.v1 import catalog_service_pb2


class PulsarCatalogTopic:
    def __init__(
        self,
        service_url: str,
        credentials: PulsarCredentials,
        *,
        send_timeout_ms: int = catalog_topic.SEND_TIMEOUT_MS,
        operation_timeout_s: int = 5,
    ) -> None:
        self._service_url = service_url
        self._credentials = credentials
        self._send_timeout_ms = send_timeout_ms
        self._operation_timeout_s = operation_timeout_s
        self._clients: dict[str, pulsar.Client] = {}
        self._lock = threading.Lock()

    def publish(self, tenant_id: str, items: Sequence[CatalogItem]) -> None:
        records = [(item.item_id, item_to_proto(item)) for item in items]
        self._write(tenant_id, records)

    def tombstone(self, tenant_id: str, item_id: str) -> None:
        self._write(tenant_id, [catalog_topic.tombstone(item_id)])

    def _write(
        self, tenant_id: str, records: Sequence[tuple[str, catalog_service_pb2.Item]]
    ) -> None:
        # The client outside the writer: a tenant without credentials is its own answer.
        client = self._client(tenant_id)
        catalog_topic.write(client, tenant_id, records, send_timeout_ms=self._send_timeout_ms)

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

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()
