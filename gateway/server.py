"""The public gateway: its services over the adapters of `gateway.wiring`, on a `GrpcHost`.

`create_server` builds everything and binds the port (tests pass port 0) but starts nothing;
`serve` runs it with the HTTP/JSON door and /metrics until SIGTERM or SIGINT, then drains
(`gateway.hosting`). It serves tenants' own keys only and holds no platform credential:
TenantService is the admin plane's (`gateway.admin_server`; docs/kubernetes.md, "Topology").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry

from gateway import catalog_service, event_service, personalization_service, user_service
from gateway.auth import KeyLookup
from gateway.catalog_service import CatalogService
from gateway.counted_events import LedgerCounter
from gateway.event_publisher import PulsarCredentials
from gateway.event_service import EventService
from gateway.event_validation import IMPORT_LIMITS
from gateway.hosting import CallBounds, GrpcHost, ServiceMount, mount, open_host, until_signalled
from gateway.http_door import start_http_door
from gateway.ingest_quota import IngestRateLimiter, RateLimitedSink
from gateway.ingestion import Ingestor
from gateway.metrics import serve_metrics
from gateway.personalization_service import PersonalizationService
from gateway.user_service import UserService
from gateway.wiring import GatewayOptions, PublicAdapters, public_adapters
from magnetar.db.app_role import require_app_role
from magnetar.db.catalog_store import PostgresCatalogStore
from magnetar.db.user_erasure import PostgresErasureStore
from magnetar.observability.metrics import rpc_histogram
from magnetar.serving.catalog import Catalog
from magnetar.serving.erasure import UserErasure
from magnetar.serving.memory_state import MemoryFirst
from magnetar.serving.personalization import PersonalizationServing
from magnetar.serving.ranked_ahead import RankedAhead
from magnetar.serving.shared_reads import BackgroundRefresh, SharedReadsCache
from magnetar.serving.tenant_clock import TenantClock
from magnetar.settings import Settings
from magnetar.v1 import (
    catalog_service_pb2_grpc,
    event_service_pb2_grpc,
    personalization_service_pb2_grpc,
    user_service_pb2_grpc,
)

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 20_000


class GatewayServer:
    """The public gateway's gRPC server and the adapters it closes when it stops."""

    def __init__(self, host: GrpcHost, adapters: PublicAdapters) -> None:
        self.host = host
        self.adapters = adapters
        self.service_names = host.service_names

    async def start(self) -> None:
        self.adapters.feed.start()
        await self.host.start()

    async def stop(self, grace: float | None) -> None:
        await self.host.stop(grace)

    async def wait_for_termination(self) -> None:
        await self.host.wait_for_termination()


def _event_service(
    settings: Settings, options: GatewayOptions, adapters: PublicAdapters
) -> EventService:
    def quota() -> IngestRateLimiter:
        # Each tenant's ingest quota (its plan) is enforced before its events reach Pulsar;
        # each replica takes its share of it (docs/tenants.md, "Quotas and replicas").
        return IngestRateLimiter(
            adapters.tenants, replicas=settings.gateway_replicas, stale_s=options.serve_stale_s
        )

    # Imports get a bucket of their own with the same quota, so an import can at most
    # double a tenant's write rate and never spends live ingest's tokens (docs/ingestion.md).
    return EventService(
        Ingestor(RateLimitedSink(adapters.publisher, quota())),
        Ingestor(RateLimitedSink(adapters.importer, quota()), IMPORT_LIMITS),
        LedgerCounter(adapters.sessions),
    )


def _personalization(adapters: PublicAdapters) -> PersonalizationServing:
    memory = adapters.feed.memory
    shared = SharedReadsCache(adapters.reader)
    state = MemoryFirst(shared, adapters.reader, memory, adapters.reader.signals)
    # Each tenant served at its own clock (docs/serving.md), kept current by the stream.
    clock = TenantClock(
        adapters.reader.newest_event_ms,
        refresh=BackgroundRefresh(max_per_second=50, name="tenant-clock-refresh"),
    )
    adapters.feed.follow(clock)
    # A rebuild's switch ("everything changed") drops the tenant's shared lists too.
    adapters.feed.follow(shared)
    return PersonalizationServing(
        state, tenant_clock=clock, ranked_ahead=RankedAhead(memory, shared)
    )


def public_services(
    settings: Settings, options: GatewayOptions, adapters: PublicAdapters
) -> list[ServiceMount]:
    """The public gateway's services, each given only what it uses. Tenants' services only:
    TenantService is the admin plane's (gateway.admin_server)."""
    catalog = Catalog(PostgresCatalogStore(adapters.sessions), adapters.catalog_topic)
    erasure = UserErasure(PostgresErasureStore(adapters.sessions))
    return [
        mount(
            event_service_pb2_grpc.add_EventServiceServicer_to_server,
            _event_service(settings, options, adapters),
            event_service.SERVICE_NAME,
        ),
        mount(
            personalization_service_pb2_grpc.add_PersonalizationServiceServicer_to_server,
            PersonalizationService(_personalization(adapters)),
            personalization_service.SERVICE_NAME,
        ),
        mount(
            catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
            CatalogService(catalog, adapters.feed.memory),
            catalog_service.SERVICE_NAME,
        ),
        mount(
            user_service_pb2_grpc.add_UserServiceServicer_to_server,
            UserService(erasure, adapters.feed, adapters.publisher),
            user_service.SERVICE_NAME,
        ),
    ]


async def create_server(
    settings: Settings,
    *,
    options: GatewayOptions | None = None,
    key_lookup: KeyLookup | None = None,
    credentials: PulsarCredentials | None = None,
    more_services: Sequence[ServiceMount] = (),
    registry: CollectorRegistry | None = None,
    reuse_port: bool = False,
) -> tuple[GatewayServer, int]:
    """Build the server and bind `settings.grpc_host:grpc_port` (0 picks a free port); it
    starts nothing. `reuse_port`: one worker of several sharing the port (`gateway.workers`).
    A failure while building closes what was already opened."""
    options = options or GatewayOptions()
    # A registry per server: tests build many servers in one process.
    registry = registry or CollectorRegistry()
    stack = AsyncExitStack()
    try:
        adapters = public_adapters(
            stack, settings, options, registry, key_lookup=key_lookup, credentials=credentials
        )
        host, port = open_host(
            stack,
            adapters.authenticator,
            CallBounds(
                max_receive_bytes=options.max_receive_bytes,
                max_calls=options.max_concurrent_calls,
                holder="this gateway process",
                reason="GATEWAY_BUSY",
                max_calls_per_tenant=options.max_concurrent_calls_per_tenant,
            ),
            [*public_services(settings, options, adapters), *more_services],
            f"{settings.grpc_host}:{settings.grpc_port}",
            histogram=rpc_histogram(registry),
            reuse_port=reuse_port,
        )
    except BaseException:
        await stack.aclose()
        raise
    return GatewayServer(host, adapters), port


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
    gateway, port = await create_server(
        settings, options=options, registry=registry, reuse_port=reuse_port
    )
    await gateway.start()
    log.info("gateway listening on %s:%d", settings.grpc_host, port)
    door = await start_http_door(
        settings.http_host,
        settings.http_port,
        settings.grpc_host,
        port,
        gateway.adapters.tenants,  # each tenant's CORS origins
        reuse_port=reuse_port,
    )
    log.info("HTTP/JSON on http://%s:%d/v1/", settings.http_host, door.port)
    # RPC metrics only: the pipeline's need the superuser token, the admin plane's.
    serve_metrics(registry, settings.metrics_host, settings.metrics_port)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    await until_signalled()
    log.info("shutting down (grace %.0f s)", options.shutdown_grace_s)
    await door.stop()
    await gateway.stop(options.shutdown_grace_s)
