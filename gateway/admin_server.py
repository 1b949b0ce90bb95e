"""The admin plane: TenantService on a listener and process of its own (`magnetar admin serve`).

Tenant administration needs the platform's most powerful credentials: the Pulsar superuser
token (create tenants, namespaces, functions), the broker's token signing key (sign each
tenant's producer token at onboarding) and the platform admin key (who may call it). They
live here and nowhere else. The public gateway (gateway.server), the one an Ingress exposes,
serves tenants' own keys and reads each tenant's producer token as this plane stored it, so
a compromised or misrouted public gateway holds nothing that acts beyond one tenant.

The listener (`admin_grpc_host:admin_grpc_port`, 127.0.0.1:50052 by default) accepts the
platform admin key only: it never looks up tenant keys, so no tenant key can be tried on
it. Health and reflection announce TenantService (docs/kubernetes.md, "Topology"). Its
/metrics (`metrics_host:admin_metrics_port`) carries the pipeline's metrics, which read
Pulsar's topic stats with the superuser token (docs/observability.md).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from gateway.auth import Authenticator
from gateway.interceptors import GatewayInterceptor
from gateway.limits import ConcurrencyLimiter
from gateway.method_scopes import method_scopes
from gateway.metrics import serve_metrics
from gateway.request_sizes import max_request_bytes
from gateway.server import add_health_and_reflection
from gateway.tenant_service import mount_tenant_service
from magnetar.api_key_store import StoredKey
from magnetar.db.app_role import require_app_role
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.observability.metrics import PipelineMetrics
from magnetar.problems import EnvironmentProblem
from magnetar.settings import Settings

log = logging.getLogger(__name__)

# Admin requests are small; this bounds what is read before the key is checked.
MAX_RECEIVE_BYTES = 1024 * 1024
SHUTDOWN_GRACE_S = 30.0  # an onboarding in progress takes seconds


class PlatformKeyOnly:
    """`KeyLookup` of the admin plane: no tenant key exists here."""

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None:
        return None


@dataclass
class AdminServer:
    grpc: Any
    health: Any
    authenticator: Authenticator
    engine: Engine
    service_names: tuple[str, ...]

    async def start(self) -> None:
        await self.grpc.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)
        self.authenticator.close()
        # Closes TenantService's platform too (gateway.lifetime).
        self.engine.dispose()


def require_admin_key(settings: Settings) -> None:
    if not settings.admin_api_key:
        raise EnvironmentProblem(
            "the admin plane has no platform admin key: every call would be refused",
            "set MAGNETAR_ADMIN_API_KEY (a Secret in Kubernetes; `magnetar dev up` writes one)",
        )


# Calls in progress on the admin plane at once.
ADMIN_MAX_CONCURRENT_CALLS = 64


def create_admin_server(settings: Settings) -> tuple[AdminServer, int]:
    """Build the admin server and bind `admin_grpc_host:admin_grpc_port` (0: a free port)."""
    require_admin_key(settings)
    engine = make_engine(settings.database_url, pool_size=2)
    authenticator = Authenticator(PlatformKeyOnly(), settings.admin_api_key, lookup_threads=1)
    server = grpc.aio.server(
        interceptors=[
            # The gateway's one interceptor (errors, size, auth, scopes); the platform key's
            # calls are few, so the call bounds only guard against a runaway client.
            GatewayInterceptor(
                authenticator,
                method_scopes(),
                process_calls=ConcurrencyLimiter(
                    ADMIN_MAX_CONCURRENT_CALLS, holder="the admin plane", reason="ADMIN_BUSY"
                ),
                tenant_calls=ConcurrencyLimiter(ADMIN_MAX_CONCURRENT_CALLS),
                request_bytes=max_request_bytes,
            )
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = [mount_tenant_service(server, settings, make_sessionmaker(engine))]
    health_servicer = add_health_and_reflection(server, names)
    address = f"{settings.admin_grpc_host}:{settings.admin_grpc_port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return AdminServer(server, health_servicer, authenticator, engine, tuple(names)), port


async def serve_admin(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then let calls in progress finish within the grace."""
    await asyncio.to_thread(require_app_role, settings.database_url)
    admin, port = create_admin_server(settings)
    await admin.start()
    log.info("admin plane (TenantService) listening on %s:%d", settings.admin_grpc_host, port)
    registry = CollectorRegistry()
    pipeline_metrics = PipelineMetrics(settings, registry)
    pipeline_metrics.start()
    serve_metrics(registry, settings.metrics_host, settings.admin_metrics_port)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.admin_metrics_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("admin plane shutting down (grace %.0f s)", SHUTDOWN_GRACE_S)
    pipeline_metrics.stop()
    await admin.stop(SHUTDOWN_GRACE_S)
