"""A gRPC server as both the public gateway and the admin plane run it.

`open_host` builds a `grpc.aio` server behind the one interceptor (`gateway.interceptors`),
registers the given services, announces them on health and reflection and binds the
address; it starts nothing. `GrpcHost.stop` says NOT_SERVING first, lets calls in progress
finish within the grace, then closes every adapter on the host's exit stack (last opened,
first closed). `until_signalled` returns at the first SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Histogram

from gateway.auth import Authenticator
from gateway.interceptors import GatewayInterceptor
from gateway.limits import ConcurrencyLimiter
from gateway.method_scopes import method_scopes
from gateway.request_sizes import max_request_bytes

# Registers a servicer on a gRPC server and returns its full service name.
ServiceMount = Callable[[Any], str]


def mount(add: Callable[[Any, Any], None], servicer: Any, name: str) -> ServiceMount:
    """A `ServiceMount` for a generated `add_*Servicer_to_server` and its servicer."""

    def register(server: Any) -> str:
        add(servicer, server)
        return name

    return register


@dataclass(frozen=True)
class CallBounds:
    """What one server admits: request size, calls in progress in all and per tenant."""

    max_receive_bytes: int
    max_calls: int
    holder: str  # who is busy, in the refusal's message
    reason: str  # the refusal's ErrorInfo reason
    max_calls_per_tenant: int


class GrpcHost:
    """A built gRPC server, its health servicer and the adapters it closes when it stops."""

    def __init__(
        self, server: Any, health_servicer: Any, names: Sequence[str], adapters: AsyncExitStack
    ) -> None:
        self.grpc = server
        self.health = health_servicer
        self.service_names = tuple(names)
        self._adapters = adapters

    async def start(self) -> None:
        await self.grpc.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        # NOT_SERVING first, so load balancers drain us while calls in progress finish.
        try:
            await self.health.enter_graceful_shutdown()
            await self.grpc.stop(grace)
        finally:
            await self._adapters.aclose()

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


def open_host(
    adapters: AsyncExitStack,
    authenticator: Authenticator,
    bounds: CallBounds,
    mounts: Sequence[ServiceMount],
    address: str,
    *,
    histogram: Histogram | None = None,
    reuse_port: bool = False,
) -> tuple[GrpcHost, int]:
    """The server on `address` (port 0: a free one) and its port. With `reuse_port` the port
    is shared with SO_REUSEPORT (`gateway.workers`); without it a second server on the same
    port fails to bind instead of silently sharing a developer's port."""
    server = grpc.aio.server(
        interceptors=[
            GatewayInterceptor(
                authenticator,
                method_scopes(),
                process_calls=ConcurrencyLimiter(
                    bounds.max_calls, holder=bounds.holder, reason=bounds.reason
                ),
                tenant_calls=ConcurrencyLimiter(bounds.max_calls_per_tenant),
                request_bytes=max_request_bytes,
                histogram=histogram,
            )
        ],
        options=[
            ("grpc.max_receive_message_length", bounds.max_receive_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    names = [register(server) for register in mounts]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return GrpcHost(server, health_servicer, names, adapters), port


async def until_signalled() -> None:
    """Return at the first SIGTERM or SIGINT this process receives."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
