"""Integration fixtures: the real Pulsar standalone and PostgreSQL, started once if down.

Every test works in tenants and topics of its own (unique names), so tests never see each
other's data and can run against a stack that is already up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cli.dev import stack
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings

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
