"""Helpers for tests that drive a tenant's real pipeline on the functions worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pulsar
from pulsar.schema import ProtobufNativeSchema

from functions.deployment import PipelineOptions
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from magnetar.v1 import events_pb2
from tenants.functions_deploy import deploy_pipeline, undeploy_pipeline, wait_running
from tenants.pulsar_setup import provision_pulsar


def make_event(
    event_id: str,
    user_id: str,
    item_id: str,
    *,
    type: int = events_pb2.EVENT_TYPE_VIEW,
    occurred_at_ms: int | None = None,
) -> events_pb2.Event:
    event = events_pb2.Event(event_id=event_id, user_id=user_id, item_id=item_id, type=type)  # type: ignore[arg-type]
    event.occurred_at.FromMilliseconds(occurred_at_ms or int(time.time() * 1000))
    return event


@dataclass
class Pipeline:
    settings: Settings
    admin: PulsarAdmin
    topics: TenantTopics
    client: pulsar.Client

    @property
    def tenant(self) -> str:
        return self.topics.tenant

    def producer(self, name: str | None = None) -> Any:
        return self.client.create_producer(
            self.topics.raw,
            producer_name=name,
            schema=ProtobufNativeSchema(events_pb2.Event),
            batching_enabled=False,
        )

    def send(self, producer: Any, events: Sequence[events_pb2.Event]) -> None:
        for event in events:
            producer.send(
                event,
                partition_key=event.user_id or event.anonymous_id,
                event_timestamp=int(time.time() * 1000),
            )

    def send_raw_bytes(self, payload: bytes, key: str) -> None:
        producer = self.client.create_producer(self.topics.raw, batching_enabled=False)
        producer.send(payload, partition_key=key)
        producer.close()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with (
            psycopg.connect(self.settings.database_url, autocommit=True) as conn,
            conn.transaction(),
        ):
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (self.tenant,))
            return conn.execute(sql, params).fetchall()

    def counted(self) -> int:
        return int(self.query("SELECT count(*) FROM processed_events")[0][0])

    def wait_for(
        self, condition: Callable[[], bool], *, timeout_s: float = 60, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def dlq_messages(self, expected: int, timeout_s: float = 30) -> list[Any]:
        consumer = self.client.subscribe(
            self.topics.dlq,
            f"test-{uuid.uuid4().hex[:6]}",
            initial_position=pulsar.InitialPosition.Earliest,
        )
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(found) < expected and time.monotonic() < deadline:
                try:
                    found.append(consumer.receive(timeout_millis=1000))
                except pulsar.Timeout:
                    continue
        finally:
            consumer.close()
        return found


Deployer = Callable[[PulsarAdmin, str, PipelineOptions], Mapping[str, dict[str, Any]]]


@contextmanager
def running_pipeline(
    settings: Settings,
    admin: PulsarAdmin,
    prefix: str = "pipe",
    deploy: Deployer = deploy_pipeline,
) -> Iterator[Pipeline]:
    tenant = f"{prefix}-{uuid.uuid4().hex[:8]}"
    topics = provision_pulsar(admin, tenant)
    options = PipelineOptions(database_url_file=settings.functions_database_url_file)
    configs = deploy(admin, tenant, options)
    wait_running(admin, tenant, configs)
    client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
    try:
        yield Pipeline(settings, admin, topics, client)
    finally:
        client.close()
        undeploy_pipeline(admin, tenant)
        for namespace in admin.namespaces(tenant):
            admin.delete_namespace(namespace)
        admin.delete_tenant(tenant)
