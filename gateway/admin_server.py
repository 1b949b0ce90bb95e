"""The admin plane: TenantService on a listener and process of its own (`magnetar admin serve`).

Only this process holds the Pulsar superuser token, the broker's token signing key and the
platform admin key; its listener (`admin_grpc_host:admin_grpc_port`) accepts the platform
admin key only, never a tenant's. Its /metrics (`admin_metrics_port`) carry the pipeline's
metrics, read with the superuser token. Why the plane is apart: docs/kubernetes.md,
"Topology".
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry

from gateway.hosting import CallBounds, GrpcHost, mount, open_host, until_signalled
from gateway.metrics import serve_metrics
from gateway.tenant_service import SERVICE_NAME, TenantService
from gateway.wiring import admin_adapters
from magnetar.db.app_role import require_app_role
from magnetar.observability.metrics import PipelineMetrics
from magnetar.problems import EnvironmentProblem
from magnetar.settings import Settings
from magnetar.v1 import tenant_service_pb2_grpc

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0  # an onboarding in progress takes seconds
# Admin requests are small; the platform key's calls are few, so the call bounds only guard
# against a runaway client.
ADMIN_BOUNDS = CallBounds(
    max_receive_bytes=1024 * 1024,
    max_calls=64,
    holder="the admin plane",
    reason="ADMIN_BUSY",
    max_calls_per_tenant=64,
)


def require_admin_key(settings: Settings) -> None:
    if not settings.admin_api_key:
        raise EnvironmentProblem(
            "the admin plane has no platform admin key: every call would be refused",
            "set MAGNETAR_ADMIN_API_KEY (a Secret in Kubernetes; `magnetar dev up` writes one)",
        )


async def create_admin_server(settings: Settings) -> tuple[GrpcHost, int]:
    """Build the admin server and bind `admin_grpc_host:admin_grpc_port` (0: a free port);
    it starts nothing. A failure while building closes what was already opened."""
    require_admin_key(settings)
    stack = AsyncExitStack()
    try:
        adapters = admin_adapters(stack, settings)
        service = TenantService(adapters.platform.admin)
        stack.callback(service.close)
        return open_host(
            stack,
            adapters.authenticator,
            ADMIN_BOUNDS,
            [
                mount(
                    tenant_service_pb2_grpc.add_TenantServiceServicer_to_server,
                    service,
                    SERVICE_NAME,
                )
            ],
            f"{settings.admin_grpc_host}:{settings.admin_grpc_port}",
        )
    except BaseException:
        await stack.aclose()
        raise


async def serve_admin(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then let calls in progress finish within the grace."""
    await asyncio.to_thread(require_app_role, settings.database_url)
    admin, port = await create_admin_server(settings)
    await admin.start()
    log.info("admin plane (TenantService) listening on %s:%d", settings.admin_grpc_host, port)
    registry = CollectorRegistry()
    pipeline_metrics = PipelineMetrics(settings, registry)
    pipeline_metrics.start()
    serve_metrics(registry, settings.metrics_host, settings.admin_metrics_port)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.admin_metrics_port)
    await until_signalled()
    log.info("admin plane shutting down (grace %.0f s)", SHUTDOWN_GRACE_S)
    pipeline_metrics.stop()
    await admin.stop(SHUTDOWN_GRACE_S)
