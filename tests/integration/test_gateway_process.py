"""`magnetar gateway serve` as a process: serves health, ingests, drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magnetar.processes import free_port
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2
from tests.integration.gateway_harness import (
    IngestTenant,
    admin_key,
    gateway,
    ingest_tenant,
    key_store,
    read_all,
)

pytestmark = pytest.mark.integration
__all__ = ["admin_key", "gateway", "ingest_tenant", "key_store"]  # fixtures, imported to register


def wait_serving(address: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "gateway never became SERVING"
            time.sleep(0.2)


def test_serve_ingests_then_exits_cleanly_on_sigterm(
    ingest_tenant: IngestTenant, settings: Settings
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "gateway", "serve", "--port", str(port)],
        env={
            **os.environ,
            "MAGNETAR_GATEWAY_INSTANCE": f"sigterm-{port}",
            # Its own metrics port: the local stack's gateway holds the default one.
            "MAGNETAR_METRICS_PORT": str(free_port()),
            "MAGNETAR_HTTP_PORT": "0",  # the HTTP door: any free port
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = f"127.0.0.1:{port}"
        wait_serving(address)
        event = events_pb2.Event(
            event_id=uuid.uuid4().hex, user_id="proc", type=events_pb2.EVENT_TYPE_CLICK, item_id="i"
        )
        event.occurred_at.GetCurrentTime()
        with grpc.insecure_channel(address) as channel:
            reply = event_service_pb2_grpc.EventServiceStub(channel).Ingest(
                event_service_pb2.IngestRequest(events=[event]),
                metadata=[("authorization", f"Bearer {ingest_tenant.ingest_key}")],
                timeout=15,
            )
        assert reply.accepted_count == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "shutting down" in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
    assert len(read_all(settings, ingest_tenant.raw_topic, expect=1)) == 1


def _metrics_answer(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def test_metrics_bind_their_own_address_not_the_grpc_one() -> None:
    """/metrics follows MAGNETAR_METRICS_HOST; gRPC's interface (here 127.0.0.1) has none."""
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "gateway", "serve", "--port", str(port)],
        env={
            **os.environ,
            "MAGNETAR_GATEWAY_INSTANCE": f"metrics-{port}",
            "MAGNETAR_GRPC_HOST": "127.0.0.1",
            # Another loopback address: Linux routes all of 127.0.0.0/8 to lo.
            "MAGNETAR_METRICS_HOST": "127.0.0.2",
            "MAGNETAR_METRICS_PORT": str(metrics_port),
            "MAGNETAR_HTTP_PORT": "0",  # the HTTP door: any free port
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_serving(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 15
        while not _metrics_answer("127.0.0.2", metrics_port):
            assert time.monotonic() < deadline, "no /metrics on 127.0.0.2"
            time.sleep(0.2)
        assert not _metrics_answer("127.0.0.1", metrics_port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
