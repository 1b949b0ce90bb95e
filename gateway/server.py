"""The gateway's gRPC server: wiring, health, reflection, graceful shutdown.

`create_server(settings)` builds everything and binds the port (tests pass port 0) but
starts nothing; `serve(settings)` runs it until SIGTERM or SIGINT, then stops taking new
calls, lets calls in progress finish within the grace period, and flushes the producers.

Other services join through `services`: a mount function registers its servicer with the
shared dependencies and returns its full service name (from its descriptor), which health
and reflection then announce.

This is the public gateway, the one an Ingress exposes: it serves tenants' own keys only and
holds no platform credential (no admin key, no Pulsar superuser token, no token signing key;
each tenant's producer token is read as the admin plane stored it). TenantService is the
admin plane's (gateway.admin_server); docs/kubernetes.md, "Topology".
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import Authenticator, KeyLookup
from gateway.auth_failures import AuthFailureLimiter
from gateway.catalog_service import mount_catalog_service
from gateway.counted_events import LedgerCounter
from gateway.event_publisher import EventPublisher, PublisherOptions, PulsarCredentials
from gateway.event_service import SERVICE_NAME as EVENT_SERVICE
from gateway.event_service import EventService
from gateway.event_validation import IMPORT_LIMITS
from gateway.http_door import start_http_door
from gateway.ingest_quota import IngestRateLimiter, RateLimitedSink
from gateway.ingestion import Ingestor
from gateway.interceptors import GatewayInterceptor
from gateway.limits import ConcurrencyLimiter
from gateway.method_scopes import method_scopes
from gateway.metrics import serve_metrics
from gateway.personalization_service import mount_personalization_service
from gateway.producer_tokens import producer_credentials
from gateway.request_sizes import max_request_bytes
from gateway.serving_memory import MemoryFeed, register_metrics
from gateway.user_service import mount_user_service
from magnetar.api_key_store import ApiKeyStore
from magnetar.db.app_role import require_app_role
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.observability.metrics import rpc_histogram
from magnetar.raw_events import import_events_topic
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2_grpc
from tenants.store import PostgresTenantStore

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 20_000


@dataclass(frozen=True)
class GatewayOptions:
    # Requests above this fail with RESOURCE_EXHAUSTED in the transport (documented: 8 MiB).
    max_receive_bytes: int = 8 * 1024 * 1024
    max_concurrent_calls_per_tenant: int = 256
    # Calls in progress in the whole process, authenticated or not (docs/serving.md).
    max_concurrent_calls: int = 1_000
    # A revoked key keeps working at most this long (positive answers are cached).
    auth_cache_ttl_s: float = 5.0
    # While PostgreSQL fails, keys and quotas are served from their last good answer this long.
    serve_stale_s: float = 600.0
    # Key lookups have a pool of their own (up to twice this many connections): a flood of
    # unknown keys cannot take the serving pool's connections.
    key_lookup_pool_size: int = 2
    # Failed authentications per client address: a burst, then a rate (gateway.auth_failures).
    auth_failures_burst: int = 100
    auth_failures_per_second: float = 10.0
    shutdown_grace_s: float = 10.0
    publisher: PublisherOptions = field(default_factory=PublisherOptions)


@dataclass(frozen=True)
class GatewayDeps:
    """What servicers share: settings, PostgreSQL sessions (app role), auth, the publisher."""

    settings: Settings
    sessions: sessionmaker[Session]
    authenticator: Authenticator
    publisher: EventPublisher
    # How long a cache of PostgreSQL answers may serve its last good one while it fails.
    serve_stale_s: float = 600.0
    # Imported history's publisher (the import topic), apart from live ingest's.
    importer: EventPublisher | None = None
    # This process's serving memory and its change stream (gateway.serving_memory).
    memory: MemoryFeed | None = None
    # Each tenant's Pulsar token, for producers besides the publishers' (the catalog's).
    credentials: PulsarCredentials | None = None


ServiceMount = Callable[[Any, GatewayDeps], str]

# What `serve()` (and `magnetar gateway serve`) mounts besides EventService: tenants'
# services only; TenantService is the admin plane's (gateway.admin_server).
DEFAULT_SERVICES: tuple[ServiceMount, ...] = (
    mount_personalization_service,
    mount_catalog_service,
    mount_user_service,
)


class GatewayServer:
    """A started-or-not gRPC server plus what must close with it."""

    def __init__(
        self,
        server: Any,
        health_servicer: Any,
        deps: GatewayDeps,
        engines: Sequence[Engine],
        service_names: Sequence[str],
    ) -> None:
        self.grpc = server
        self.health = health_servicer
        self.deps = deps
        self.service_names = tuple(service_names)
        self._engines = tuple(engines)

    async def start(self) -> None:
        if self.deps.memory is not None:
            self.deps.memory.start()
        await self.grpc.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        # NOT_SERVING first, so load balancers drain us while calls in progress finish.
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)
        await self.deps.publisher.close()
        if self.deps.importer is not None:
            await self.deps.importer.close()
        self.deps.authenticator.close()
        if self.deps.memory is not None:
            self.deps.memory.stop()
        for engine in self._engines:
            engine.dispose()

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


def mount_event_service(server: Any, deps: GatewayDeps) -> str:
    # Each tenant's ingest quota (its plan) is enforced before its events reach Pulsar; each
    # replica takes its share of it (docs/tenants.md, "Quotas and replicas").
    quotas = IngestRateLimiter(
        PostgresTenantStore(deps.sessions),
        replicas=deps.settings.gateway_replicas,
        stale_s=deps.serve_stale_s,
    )
    # Imports get a bucket of their own with the same quota, so an import can at most
    # double a tenant's write rate and never spends live ingest's tokens (docs/ingestion.md).
    import_quotas = IngestRateLimiter(
        PostgresTenantStore(deps.sessions),
        replicas=deps.settings.gateway_replicas,
        stale_s=deps.serve_stale_s,
    )
    importer = None
    if deps.importer is not None:
        importer = Ingestor(RateLimitedSink(deps.importer, import_quotas), IMPORT_LIMITS)
    event_service_pb2_grpc.add_EventServiceServicer_to_server(
        EventService(
            Ingestor(RateLimitedSink(deps.publisher, quotas)),
            importer,
            LedgerCounter(deps.sessions),
        ),
        server,
    )
    return str(EVENT_SERVICE)


def create_server(
    settings: Settings,
    *,
    options: GatewayOptions | None = None,
    key_lookup: KeyLookup | None = None,
    credentials: PulsarCredentials | None = None,
    services: Sequence[ServiceMount] = DEFAULT_SERVICES,
    registry: CollectorRegistry | None = None,
    reuse_port: bool = False,
) -> tuple[GatewayServer, int]:
    """Build the server and bind `settings.grpc_host:grpc_port` (0 picks a free port). With
    `reuse_port` (`--workers`, `gateway.workers`) the port is shared with SO_REUSEPORT;
    without it a second gateway on the same port fails to bind instead of silently sharing
    a developer's port."""
    options = options or GatewayOptions()
    # A registry per server: tests build many servers in one process.
    registry = registry or CollectorRegistry()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    engines = [engine]
    if key_lookup is None:
        key_engine = make_engine(settings.database_url, pool_size=options.key_lookup_pool_size)
        engines.append(key_engine)
        key_lookup = ApiKeyStore(make_sessionmaker(key_engine))
    # Tenants' keys only: the platform admin key is the admin plane's.
    authenticator = Authenticator(
        key_lookup,
        ttl_s=options.auth_cache_ttl_s,
        stale_s=options.serve_stale_s,
        # As many threads as the key pool has connections.
        lookup_threads=2 * options.key_lookup_pool_size,
        failures=AuthFailureLimiter(
            per_second=options.auth_failures_per_second, burst=options.auth_failures_burst
        ),
    )
    # Each tenant's producer authenticates as the tenant's own Pulsar role.
    credentials = credentials or producer_credentials(settings, sessions)
    publisher = EventPublisher(settings.pulsar_service_url, credentials, options.publisher)
    server = grpc.aio.server(
        interceptors=[
            GatewayInterceptor(
                authenticator,
                method_scopes(),
                process_calls=ConcurrencyLimiter(
                    options.max_concurrent_calls,
                    holder="this gateway process",
                    reason="GATEWAY_BUSY",
                ),
                tenant_calls=ConcurrencyLimiter(options.max_concurrent_calls_per_tenant),
                request_bytes=max_request_bytes,
                histogram=rpc_histogram(registry),
            )
        ],
        options=[
            ("grpc.max_receive_message_length", options.max_receive_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    importer = EventPublisher(
        settings.pulsar_service_url,
        credentials,
        options.publisher,
        topic_of=import_events_topic,
        role="import",
    )
    feed = MemoryFeed(settings.database_url)
    register_metrics(feed.memory, registry)
    deps = GatewayDeps(
        settings,
        sessions,
        authenticator,
        publisher,
        options.serve_stale_s,
        importer=importer,
        memory=feed,
        credentials=credentials,
    )
    names = [mount(server, deps) for mount in (mount_event_service, *services)]
    health_servicer = add_health_and_reflection(server, names)
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise OSError(f"cannot bind {settings.grpc_host}:{settings.grpc_port}")
    return GatewayServer(server, health_servicer, deps, engines, names), port


def add_health_and_reflection(server: Any, names: Sequence[str]) -> Any:
    """grpc.health.v1 and reflection for `names`; returns the health servicer."""
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
    return health_servicer


def tune_interpreter(settings: Settings) -> None:
    """Process-wide: a gateway process serves calls from many threads that share the GIL."""
    sys.setswitchinterval(settings.gil_switch_interval_us / 1_000_000)
    # Fewer young-generation collections: every call allocates a few hundred objects, and at
    # CPython's default (700) the collector took ~9 % of a busy gateway (BENCHMARKS.md).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def serve(
    settings: Settings, options: GatewayOptions | None = None, *, reuse_port: bool = False
) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully; `reuse_port`: one worker of
    several sharing the gRPC and HTTP ports (`gateway.workers`)."""
    options = options or GatewayOptions()
    # Refuse to start as a role that row-level security does not bind (magnetar.db.app_role).
    await asyncio.to_thread(require_app_role, settings.database_url)
    tune_interpreter(settings)
    registry = CollectorRegistry()
    gateway, port = create_server(
        settings, options=options, registry=registry, reuse_port=reuse_port
    )
    await gateway.start()
    log.info("gateway listening on %s:%d", settings.grpc_host, port)
    origins = PostgresTenantStore(gateway.deps.sessions)  # each tenant's CORS origins
    door = await start_http_door(
        settings.http_host,
        settings.http_port,
        settings.grpc_host,
        port,
        origins,
        reuse_port=reuse_port,
    )
    log.info("HTTP/JSON on http://%s:%d/v1/", settings.http_host, door.port)
    # RPC metrics only: the pipeline's need the superuser token, the admin plane's.
    serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down (grace %.0f s)", options.shutdown_grace_s)
    await door.stop()
    await gateway.stop(options.shutdown_grace_s)
