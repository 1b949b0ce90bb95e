"""The gateway's adapters: each built once, each closed by the exit stack it is given.

`public_adapters` opens what the public gateway's services use, `admin_adapters` what the
admin plane's TenantService uses. Each adapter registers its closing on the stack as it is
opened, so the server that holds the stack (`gateway.hosting.GrpcHost`) closes them all,
last opened first, after its calls have drained, and a failure halfway through building
closes what was already open. Nothing here registers a servicer.
"""

from __future__ import annotations

import threading
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import Authenticator, KeyLookup
from gateway.auth_failures import AuthFailureLimiter
from gateway.catalog_publisher import PulsarCatalogTopic
from gateway.event_publisher import EventPublisher, PublisherOptions, PulsarCredentials
from gateway.producer_tokens import producer_credentials
from gateway.serving_memory import MemoryFeed, register_metrics
from magnetar.api_key_store import ApiKeyStore, StoredKey
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.db.serving_reader import ServingStateReader, open_serving_pool
from magnetar.raw_events import import_events_topic
from magnetar.settings import Settings
from tenants.store import PostgresTenantStore
from tenants.wiring import TenantPlatform, build_tenant_platform


@dataclass(frozen=True)
class GatewayOptions:
    """The public gateway's bounds: what it admits, what its adapters keep and wait for."""

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
class PublicAdapters:
    """What the public gateway talks to, one of each per process."""

    sessions: sessionmaker[Session]  # PostgreSQL as the application role (RLS applies)
    tenants: PostgresTenantStore  # quotas, CORS origins, producer tokens
    authenticator: Authenticator  # tenants' keys only: no platform admin key here
    credentials: PulsarCredentials  # each tenant's producer token
    publisher: EventPublisher  # live events → each tenant's raw topic
    importer: EventPublisher  # imported history → each tenant's import topic
    catalog_topic: PulsarCatalogTopic
    reader: ServingStateReader  # serving reads, on a pool of their own
    feed: MemoryFeed  # this process's serving memory and its change stream


def _sessions(stack: AsyncExitStack, url: str, pool_size: int = 10) -> sessionmaker[Session]:
    engine = make_engine(url, pool_size=pool_size)
    stack.callback(engine.dispose)
    return make_sessionmaker(engine)


def public_adapters(
    stack: AsyncExitStack,
    settings: Settings,
    options: GatewayOptions,
    registry: CollectorRegistry,
    *,
    key_lookup: KeyLookup | None = None,
    credentials: PulsarCredentials | None = None,
) -> PublicAdapters:
    """Open the public gateway's adapters onto `stack`. `key_lookup` and `credentials`
    replace the stored keys and producer tokens (tests)."""
    sessions = _sessions(stack, settings.database_url)
    tenants = PostgresTenantStore(sessions)
    if key_lookup is None:
        key_sessions = _sessions(stack, settings.database_url, options.key_lookup_pool_size)
        key_lookup = ApiKeyStore(key_sessions)
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
    stack.callback(authenticator.close)
    # Each tenant's producers authenticate as the tenant's own Pulsar role.
    credentials = credentials or producer_credentials(settings, tenants)
    publisher = EventPublisher(settings.pulsar_service_url, credentials, options.publisher)
    stack.push_async_callback(publisher.close)
    importer = EventPublisher(
        settings.pulsar_service_url,
        credentials,
        options.publisher,
        topic_of=import_events_topic,
        role="import",
    )
    stack.push_async_callback(importer.close)
    catalog_topic = PulsarCatalogTopic(settings.pulsar_service_url, credentials)
    stack.callback(catalog_topic.close)
    pool = open_serving_pool(settings.database_url)
    stack.callback(pool.close, timeout=1.0)
    reader = ServingStateReader(pool)
    feed = MemoryFeed(settings.database_url, read_rows=reader.many_users_rows)
    stack.callback(feed.stop)
    register_metrics(feed, registry)
    return PublicAdapters(
        sessions=sessions,
        tenants=tenants,
        authenticator=authenticator,
        credentials=credentials,
        publisher=publisher,
        importer=importer,
        catalog_topic=catalog_topic,
        reader=reader,
        feed=feed,
    )


class PlatformKeyOnly:
    """`KeyLookup` of the admin plane: no tenant key exists here."""

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None:
        return None


@dataclass(frozen=True)
class AdminAdapters:
    """What the admin plane talks to: the platform key and the tenant platform."""

    authenticator: Authenticator  # the platform admin key only
    platform: TenantPlatform  # Pulsar superuser, token signing key, PostgreSQL


def admin_adapters(stack: AsyncExitStack, settings: Settings) -> AdminAdapters:
    """Open the admin plane's adapters onto `stack`."""
    sessions = _sessions(stack, settings.database_url, pool_size=2)
    authenticator = Authenticator(PlatformKeyOnly(), settings.admin_api_key, lookup_threads=1)
    stack.callback(authenticator.close)
    # No producer to close before offboarding here: the public gateway's producers of the
    # tenant are cut off by Pulsar when its namespaces go (docs/tenants.md, "Offboarding").
    platform = build_tenant_platform(settings, sessions)
    stack.callback(platform.close)
    # Loading the function state client takes seconds: not in the first CreateTenant.
    threading.Thread(target=platform.deployer.warm_up, name="tenants-warm-up", daemon=True).start()
    return AdminAdapters(authenticator, platform)
