"""A real gateway and admin plane in a background event loop (so tests call them with
blocking stubs), and the making of a tenant ready for ingestion. The fixtures over them
are in tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import pulsar
from pulsar.schema import BytesSchema

from gateway.admin_server import create_admin_server
from gateway.auth import KeyLookup
from gateway.event_publisher import PulsarCredentials
from gateway.hosting import GrpcHost
from gateway.server import GatewayServer, create_server
from gateway.wiring import GatewayOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.db.models import Tenant
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.raw_events import provision_raw_topic
from magnetar.settings import Settings
from tenants.credentials import TenantRoleTokens
from tenants.store import PostgresTenantStore

T = TypeVar("T")


class _Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace: float | None) -> None: ...


S = TypeVar("S", bound=_Server)


class _Running(Generic[S]):
    """A server built and started in a private event loop in a daemon thread, for tests
    that call it with blocking stubs; `stop` drains it and ends the loop."""

    def __init__(self, build: Callable[[], Coroutine[Any, Any, tuple[S, int]]]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.server, self.port = self.run(build())
        self.run(self.server.start())

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float = 2.0) -> None:
        try:
            self.run(self.server.stop(grace))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


class RunningGateway(_Running[GatewayServer]):
    """The public gateway (`gateway.server.create_server`); `key_lookup` and `credentials`
    replace the stored keys and producer tokens."""

    def __init__(
        self,
        settings: Settings,
        options: GatewayOptions | None = None,
        *,
        key_lookup: KeyLookup | None = None,
        credentials: PulsarCredentials | None = None,
    ) -> None:
        self.settings = settings
        super().__init__(
            lambda: create_server(
                settings, options=options, key_lookup=key_lookup, credentials=credentials
            )
        )


class RunningAdmin(_Running[GrpcHost]):
    """The admin plane (`gateway.admin_server.create_admin_server`), on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.merged({"admin_grpc_host": "127.0.0.1", "admin_grpc_port": 0})
        super().__init__(lambda: create_admin_server(self.settings))


@dataclass(frozen=True)
class IngestTenant:
    """A tenant ready for ingestion: Pulsar namespace + raw topic, a tenants row, keys."""

    tenant_id: str
    raw_topic: str
    ingest_key: str
    read_key: str
    ingest_key_id: str


def add_tenant_row(settings: Settings, tenant_id: str) -> None:
    """The tenant's row and, as onboarding stores it, the producer token the gateway reads."""
    engine = make_engine(settings.database_url, pool_size=1)
    with make_sessionmaker(engine).begin() as session:
        session.add(Tenant(tenant_id=tenant_id, display_name=f"test {tenant_id}"))
    engine.dispose()
    store_producer_token(settings, tenant_id)


def set_allowed_origins(settings: Settings, tenant_id: str, *origins: str) -> None:
    """What `magnetar tenants update --allowed-origin` records (canonical origins)."""
    engine = make_engine(settings.database_url, pool_size=1)
    with make_sessionmaker(engine).begin() as session:
        session.get_one(Tenant, tenant_id).allowed_origins = list(origins)
    engine.dispose()


def remove_tenant_row(settings: Settings, tenant_id: str) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    with make_sessionmaker(engine).begin() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is not None:
            session.delete(tenant)
    engine.dispose()


def store_producer_token(settings: Settings, tenant_id: str) -> None:
    """What onboarding's role step does: the tenant's role token where the gateway reads it."""
    engine = make_engine(settings.database_url, pool_size=1)
    token = TenantRoleTokens.from_file(settings.pulsar_token_secret_key_file).token_for(tenant_id)
    PostgresTenantStore(make_sessionmaker(engine)).set_producer_token(tenant_id, token)
    engine.dispose()


def onboard_for_ingest(
    settings: Settings, admin: PulsarAdmin, store: ApiKeyStore, tenant_id: str
) -> IngestTenant:
    topic = provision_raw_topic(admin, tenant_id)
    add_tenant_row(settings, tenant_id)
    ingest, _ = store.create(tenant_id, [Scope.INGEST], "test ingest key")
    read, _ = store.create(tenant_id, [Scope.READ], "test read key")
    return IngestTenant(tenant_id, topic, ingest.secret, read.secret, ingest.key_id)


def pulsar_client(settings: Settings) -> pulsar.Client:
    return pulsar.Client(
        settings.pulsar_service_url,
        authentication=pulsar.AuthenticationToken(settings.pulsar_admin_token),
        operation_timeout_seconds=10,
    )


def read_all(settings: Settings, topic: str, *, expect: int, timeout_s: float = 5.0) -> list[Any]:
    """Every message on `topic` from the start: `expect` of them, then `timeout_s` of quiet."""
    client = pulsar_client(settings)
    try:
        consumer = client.subscribe(
            topic,
            f"test-reader-{threading.get_ident()}",
            schema=BytesSchema(),
            initial_position=pulsar.InitialPosition.Earliest,
        )
        messages: list[Any] = []
        wait_ms = int(timeout_s * 1000)
        while True:
            try:
                # Long wait until the expected count, then a short one to catch extras.
                message = consumer.receive(wait_ms if len(messages) < expect else 1000)
            except pulsar.Timeout:
                break
            messages.append(message)
            consumer.acknowledge(message)
        consumer.close()
        return messages
    finally:
        client.close()
