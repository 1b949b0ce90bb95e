"""`magnetar gateway serve` as a process: serves health, ingests, drains on SIGTERM."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable

import grpc
import pytest

from bench.gateway import GatewayProcess
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2
from tests.integration.gateway_harness import (
    IngestTenant,
    read_all,
)

pytestmark = pytest.mark.integration


def test_serve_ingests_then_exits_cleanly_on_sigterm(
    ingest_tenant: IngestTenant,
    settings: Settings,
    gateway_processes: Callable[..., GatewayProcess],
) -> None:
    process = gateway_processes("sigterm")
    event = events_pb2.Event(
        event_id=uuid.uuid4().hex, user_id="proc", type=events_pb2.EVENT_TYPE_CLICK, item_id="i"
    )
    event.occurred_at.GetCurrentTime()
    with grpc.insecure_channel(process.address) as channel:
        reply = event_service_pb2_grpc.EventServiceStub(channel).Ingest(
            event_service_pb2.IngestRequest(events=[event]),
            metadata=[("authorization", f"Bearer {ingest_tenant.ingest_key}")],
            timeout=15,
        )
    assert reply.accepted_count == 1
    assert process.stop() == 0
    assert "shutting down" in process.output()
    assert len(read_all(settings, ingest_tenant.raw_topic, expect=1)) == 1


def _metrics_answer(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def test_metrics_bind_their_own_address_not_the_grpc_one(
    gateway_processes: Callable[..., GatewayProcess],
) -> None:
    """/metrics follows MAGNETAR_METRICS_HOST; gRPC's interface (here 127.0.0.1) has none."""
    process = gateway_processes(
        "metrics",
        env={
            "MAGNETAR_GRPC_HOST": "127.0.0.1",
            # Another loopback address: Linux routes all of 127.0.0.0/8 to lo.
            "MAGNETAR_METRICS_HOST": "127.0.0.2",
        },
    )
    deadline = time.monotonic() + 15
    while not _metrics_answer("127.0.0.2", process.metrics_port):
        assert time.monotonic() < deadline, "no /metrics on 127.0.0.2"
        time.sleep(0.2)
    assert not _metrics_answer("127.0.0.1", process.metrics_port)
