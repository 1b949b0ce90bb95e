"""A real gateway in a background event loop (so tests call it with blocking stubs), and
the fixtures of a tenant ready for ingestion. Test modules import the fixtures they use."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pulsar
import pytest
from pulsar.schema import BytesSchema

from gateway.admin_server import AdminServer, create_admin_server
from gateway.event_publisher import PulsarCredentials
from gateway.server import GatewayOptions, GatewayServer, create_server
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.db.models import Tenant
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.raw_events import provision_raw_topic
from magnetar.settings import Settings
from tenants.credentials import TenantRoleTokens
from tenants.store import PostgresTenantStore
from tests.integration.conftest import ScratchTenant

T = TypeVar("T")


class _LoopThread:
    """A private event loop in a daemon thread, for servers tests call with blocking stubs."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _end(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class RunningGateway(_LoopThread):
    """`create_server` + `start` in a private loop thread; `stop` drains it."""

    def __init__(
        self,
        settings: Settings,
        options: GatewayOptions | None = None,
        credentials: PulsarCredentials | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings

        async def build() -> tuple[GatewayServer, int]:
            return create_server(settings, options=options, credentials=credentials)

        self.server, self.port = self.run(build())
        self.run(self.server.start())

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 2.0) -> None:
        try:
            self.run(self.server.stop(grace))
        finally:
            self._end()


class RunningAdmin(_LoopThread):
    """The admin plane (`create_admin_server`) in a private loop thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings.merged({"admin_grpc_host": "127.0.0.1", "admin_grpc_port": 0})

        async def build() -> tuple[AdminServer, int]:
            return create_admin_server(self.settings)

        self.server, self.port = self.run(build())
        self.run(self.server.start())

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 2.0) -> None:
        try:
            self.run(self.server.stop(grace))
        finally:
            self._end()


@dataclass(frozen=True)
class IngestTenant:
    """A tenant ready for ingestion: Pulsar namespace + raw topic, a tenants row, keys."""

    tenant_id: str
    raw_topic: str
    ingest_key: str
    read_key: str
    ingest_key_id: str


@pytest.fixture
def key_store(settings: Settings) -> Iterator[ApiKeyStore]:
    engine = make_engine(settings.database_url, pool_size=2)
    yield ApiKeyStore(make_sessionmaker(engine))
    engine.dispose()


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


@pytest.fixture
def ingest_tenant(
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
    unique_tenant: ScratchTenant,
    gateway: RunningGateway,
) -> Iterator[IngestTenant]:
    tenant = onboard_for_ingest(settings, pulsar_admin, key_store, unique_tenant.name)
    yield tenant
    # Offboarding closes the tenant's producer before its namespace goes.
    gateway.run(gateway.server.deps.publisher.close_tenant(tenant.tenant_id))
    remove_tenant_row(settings, tenant.tenant_id)


@pytest.fixture(scope="module")
def admin_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def gateway(settings: Settings, admin_key: str) -> Iterator[RunningGateway]:
    running = RunningGateway(
        settings.merged({"grpc_port": 0, "admin_api_key": admin_key}),
        GatewayOptions(auth_cache_ttl_s=0.2),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_plane(settings: Settings, admin_key: str) -> Iterator[RunningAdmin]:
    running = RunningAdmin(settings.merged({"admin_api_key": admin_key}))
    yield running
    running.stop()
