"""Integration fixtures: the real Pulsar standalone and PostgreSQL, started once if down; a
gateway and an admin plane in this process (tests.integration.gateway_harness) or scratch
gateway processes (bench.gateway); API keys and tenants ready for ingestion.

Every test works in tenants and topics of its own (unique names), so tests never see each
other's data and can run against a stack that is already up.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from bench.gateway import GatewayProcess, gateway_process
from cli.dev import stack
from gateway.wiring import GatewayOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tests.integration.gateway_harness import (
    IngestTenant,
    RunningAdmin,
    RunningGateway,
    onboard_for_ingest,
    remove_tenant_row,
)
from tests.integration.serving_support import ServingTenant, serving_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def settings() -> Settings:
    # The stack's admin process is not needed: tests build their own admin plane in-process.
    needed = {part: state for part, state in stack.status().items() if part != "admin"}
    if not all(state == "ready" for state in needed.values()):
        stack.up()
    return Settings.load()


@pytest.fixture(scope="session")
def pulsar_admin(settings: Settings) -> Iterator[PulsarAdmin]:
    with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
        yield admin


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class ScratchTenant:
    """A fresh Pulsar tenant with an `events` namespace (dedup on), removed afterwards."""

    name: str

    @property
    def events_namespace(self) -> str:
        return f"{self.name}/events"

    def topic(self, name: str) -> str:
        return f"persistent://{self.events_namespace}/{name}"


@pytest.fixture
def unique_tenant(pulsar_admin: PulsarAdmin) -> Iterator[ScratchTenant]:
    tenant = ScratchTenant(unique_name("t"))
    pulsar_admin.create_tenant(tenant.name)
    pulsar_admin.create_namespace(tenant.events_namespace)
    pulsar_admin.set_deduplication(tenant.events_namespace, True)
    yield tenant
    for namespace in pulsar_admin.namespaces(tenant.name):
        pulsar_admin.delete_namespace(namespace)
    pulsar_admin.delete_tenant(tenant.name)


@pytest.fixture
def key_store(settings: Settings) -> Iterator[ApiKeyStore]:
    engine = make_engine(settings.database_url, pool_size=2)
    yield ApiKeyStore(make_sessionmaker(engine))
    engine.dispose()


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
    gateway.run(gateway.server.adapters.publisher.close_tenant(tenant.tenant_id))
    remove_tenant_row(settings, tenant.tenant_id)


@pytest.fixture
def shop(
    settings: Settings, pulsar_admin: PulsarAdmin, key_store: ApiKeyStore
) -> Iterator[ServingTenant]:
    """A serving tenant of its own, without state (tests.integration.serving_support)."""
    with serving_tenant(settings, pulsar_admin, key_store) as made:
        yield made


@pytest.fixture
def gateway_processes() -> Iterator[Callable[..., GatewayProcess]]:
    """Starts scratch gateway processes (`bench.gateway.gateway_process`, same arguments);
    those still running are stopped when the test ends."""
    with ExitStack() as started:

        def start(name: str, **options: Any) -> GatewayProcess:
            return started.enter_context(gateway_process(name, **options))

        yield start
