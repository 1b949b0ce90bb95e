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
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from functools import partial

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.gateway import SERVE, GatewayProcess, child_pids
from magnetar.processes import free_port
from magnetar.settings import Settings
from magnetar.v1 import personalization_service_pb2 as pb
from magnetar.v1 import user_service_pb2 as users
from tests.e2e.grpc_support import Stubs, failure, stubs
from tests.integration.serving_support import NOW, ServingTenant, commit, purchase

pytestmark = pytest.mark.integration


@pytest.fixture
def two_workers(
    gateway_processes: Callable[..., GatewayProcess],
) -> Iterator[tuple[str, list[int]]]:
    """The shared address and each worker's metrics port."""
    process = gateway_processes("workers", args=("--workers", "2"))
    yield process.address, [process.metrics_port, process.metrics_port + 1]
    assert process.stop(60) == 0


def _users_held(metrics_port: int, tenant: str) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    except urllib.error.URLError:
        return 0.0  # a worker still starting: the first answered health checks for both
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
    commit(settings, shop.tenant_id, purchase(shop.tenant_id, user, "s", "tent", NOW, "out"))
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


def test_a_sigterm_while_the_workers_start_stops_them_all_with_status_0() -> None:
    """The supervisor forwards SIGTERM at once; a worker still starting, before its own
    handler, ends by the signal itself: a clean stop, not a failed worker."""
    argv = [sys.executable, *SERVE[:-1], "2", "--port", str(free_port())]
    env = {**os.environ, "MAGNETAR_METRICS_PORT": str(free_port()), "MAGNETAR_HTTP_PORT": "0"}
    supervisor = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while len(child_pids(supervisor.pid)) < 2:  # both spawned, neither serving yet
            assert supervisor.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0, supervisor.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
