"""The public gateway and the admin plane are built from one wiring: what each serves, and
that everything a server opened is closed with it, also when building it fails halfway.

No stack: PostgreSQL and Pulsar point at loopback ports nothing listens on (adapters connect
on first use, the serving pool and the change listener keep retrying in the background).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gateway.admin_server import create_admin_server
from gateway.server import create_server
from magnetar.processes import free_port
from magnetar.settings import Settings
from magnetar.v1 import tenant_service_pb2

PUBLIC = {
    "magnetar.v1.EventService",
    "magnetar.v1.PersonalizationService",
    "magnetar.v1.CatalogService",
    "magnetar.v1.UserService",
}
TENANT_SERVICE = tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name


def nowhere(**overrides: object) -> Settings:
    """Settings whose PostgreSQL and Pulsar are closed loopback ports."""
    return Settings().merged(
        {
            "database_url": f"postgresql://magnetar_app@127.0.0.1:{free_port()}/magnetar",
            "pulsar_service_url": f"pulsar://127.0.0.1:{free_port()}",
            "pulsar_admin_url": f"http://127.0.0.1:{free_port()}",
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "admin_grpc_host": "127.0.0.1",
            "admin_grpc_port": 0,
            "admin_api_key": "mga_test",
            **overrides,
        }
    )


def threads_left(before: set[threading.Thread], wait_s: float = 5.0) -> set[str]:
    """Names of the threads started since `before` that are still running after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        left = {t for t in threading.enumerate() if t not in before and t.is_alive()}
        # Not the server's: the admin plane's warm-up, a daemon that ends on its own, and
        # grpc.aio's completion queue poller, one per process for good.
        left = {t for t in left if t.name != "tenants-warm-up" and "_poll_wrapper" not in t.name}
        if not left or time.monotonic() > deadline:
            return {t.name for t in left}
        time.sleep(0.05)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another socket listens on: binding it without SO_REUSEPORT fails."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_the_public_gateway_serves_tenants_services_and_closes_all_it_opened() -> None:
    before = set(threading.enumerate())

    async def run() -> tuple[str, ...]:
        gateway, _ = await create_server(nowhere())
        await gateway.start()
        await gateway.stop(0)
        return gateway.service_names

    assert set(asyncio.run(run())) == PUBLIC
    assert threads_left(before) == set()


def test_a_public_gateway_that_cannot_bind_closes_what_it_had_opened(held_port: int) -> None:
    before = set(threading.enumerate())

    async def run() -> None:
        await create_server(nowhere(grpc_port=held_port))

    with pytest.raises(RuntimeError, match=f"bind to address 127.0.0.1:{held_port}"):
        asyncio.run(run())
    # The serving pool's workers among them: they would retry PostgreSQL forever.
    assert threads_left(before) == set()


def test_the_admin_plane_serves_tenant_service_only_and_closes_all_it_opened() -> None:
    before = set(threading.enumerate())

    async def run() -> tuple[str, ...]:
        admin, _ = await create_admin_server(nowhere())
        await admin.start()
        await admin.stop(0)
        return admin.service_names

    assert asyncio.run(run()) == (TENANT_SERVICE,)
    assert threads_left(before) == set()
