"""`magnetar gateway serve --workers 2`: two processes on one port, each with its own memory.

Which worker a connection reaches is the kernel's choice (SO_REUSEPORT), so the test opens
connections until each worker has served the user, telling them apart by their own /metrics
(worker i on metrics_port + i): `magnetar_serving_memory_entries{tenant, kind="user"}`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial

import grpc
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from magnetar.db.state_writer import commit_batch
from magnetar.personalization.settings import SignalSettings
from magnetar.processes import free_port
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import personalization_service_pb2 as pb
from magnetar.v1 import user_service_pb2 as users
from tests.e2e.grpc_support import Stubs, failure, stubs
from tests.integration.gateway_harness import key_store
from tests.integration.test_gateway_process import wait_serving
from tests.integration.test_serving import NOW, ServingTenant, _purchase, serving_tenant

pytestmark = pytest.mark.integration
GATEWAY_SERVE = (sys.executable, "-m", "cli.main", "gateway", "serve")
__all__ = ["key_store"]  # fixture, imported to register


@pytest.fixture
def shop(
    settings: Settings, pulsar_admin: PulsarAdmin, key_store: object
) -> Iterator[ServingTenant]:
    with serving_tenant(settings, pulsar_admin, key_store) as made:  # type: ignore[arg-type]
        yield made


@pytest.fixture
def two_workers() -> Iterator[tuple[str, list[int]]]:
    """The shared address and each worker's metrics port."""
    port, metrics = free_port(), free_port()
    process = subprocess.Popen(
        [*GATEWAY_SERVE, "--port", str(port), "--workers", "2"],
        env={
            **os.environ,
            "MAGNETAR_GATEWAY_INSTANCE": f"workers-{port}",
            "MAGNETAR_METRICS_PORT": str(metrics),
            "MAGNETAR_HTTP_PORT": "0",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        address = f"127.0.0.1:{port}"
        wait_serving(address, timeout_s=60)
        yield address, [metrics, metrics + 1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _users_held(metrics_port: int, tenant: str) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "magnetar_serving_memory_entries":
            for sample in family.samples:
                if sample.labels == {"tenant": tenant, "kind": "user"}:
                    return float(sample.value)
    return 0.0


def _profile(client: Stubs, tenant: ServingTenant, user: str) -> pb.GetUserProfileResponse:
    request = pb.GetUserProfileRequest(user_id=user)
    reply: pb.GetUserProfileResponse = client.personalization.GetUserProfile(
        request, metadata=tenant.read, timeout=10
    )
    return reply


def test_two_workers_serve_and_delete_user_empties_both_memories_before_answering(
    settings: Settings, two_workers: tuple[str, list[int]], shop: ServingTenant
) -> None:
    address, metrics_ports = two_workers
    user = f"w-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        bought = _purchase(shop.tenant_id, user, "s", "tent", NOW, "out")
        commit_batch(conn, shop.tenant_id, [bought], SignalSettings(), now_ms=NOW)
    # Separate connections (no shared subchannel) until both workers hold the user.
    channels: list[grpc.Channel] = []
    deadline = time.monotonic() + 60
    try:
        while not all(_users_held(p, shop.tenant_id) == 1 for p in metrics_ports):
            assert time.monotonic() < deadline, "the connections never reached both workers"
            channel = grpc.insecure_channel(
                address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            channels.append(channel)
            # Both serve: every connection answers, whichever worker it reached.
            profile = _profile(stubs(channel), shop, user).profile
            assert [r.item_id for r in profile.recent_items] == ["tent"]
        clients = [stubs(channel) for channel in channels]

        clients[0].users.DeleteUser(
            users.DeleteUserRequest(user_id=user), metadata=shop.manage, timeout=15
        )

        # Answered: neither worker's memory holds the user any more, nor serves it.
        assert [_users_held(p, shop.tenant_id) for p in metrics_ports] == [0, 0]
        for client in clients:
            gone = failure(partial(_profile, client, shop, user))
            assert gone.code is grpc.StatusCode.NOT_FOUND
    finally:
        for channel in channels:
            channel.close()
