"""A serving tenant (Pulsar namespaces, a tenants row, read, ingest and manage keys) and
state for it, written with the materializer's own `commit_batch`, as its NOTIFY is what a
gateway hears. The `shop` fixture over it is in tests/integration/conftest.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.state_writer import commit_batch
from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tenants.pulsar_setup import provision_pulsar
from tests.e2e.grpc_support import bearer
from tests.integration.gateway_harness import add_tenant_row, remove_tenant_row


@dataclass(frozen=True)
class ServingTenant:
    tenant_id: str
    read_key: str
    ingest_key: str
    manage_key: str

    @property
    def read(self) -> list[tuple[str, str]]:
        return bearer(self.read_key)

    @property
    def ingest(self) -> list[tuple[str, str]]:
        return bearer(self.ingest_key)

    @property
    def manage(self) -> list[tuple[str, str]]:
        return bearer(self.manage_key)


@contextmanager
def serving_tenant(
    settings: Settings, admin: PulsarAdmin, store: ApiKeyStore
) -> Iterator[ServingTenant]:
    """A tenant with its Pulsar namespaces and topics, a tenants row and three keys."""
    tenant = f"serve-{uuid.uuid4().hex[:8]}"
    provision_pulsar(admin, tenant)
    add_tenant_row(settings, tenant)
    try:
        read, _ = store.create(tenant, [Scope.READ], "serving test")
        ingest, _ = store.create(tenant, [Scope.INGEST], "serving test")
        manage, _ = store.create(tenant, [Scope.MANAGE], "serving test")
        yield ServingTenant(tenant, read.secret, ingest.secret, manage.secret)
    finally:
        remove_tenant_row(settings, tenant)
        admin.delete_tenant(tenant)


NOW = int(time.time() * 1000)


def purchase(tenant: str, user: str, session: str, item: str, at: int, category: str) -> Any:
    return EnrichedEvent(
        event_id=uuid.uuid4().hex,
        tenant_id=tenant,
        user_id=user,
        session_id=session,
        type=records.PURCHASE,
        item_id=item,
        occurred_at=at,
        categories=(category,),
    )


def seed_shop(settings: Settings, tenant: str, *extra: EnrichedEvent) -> None:
    """Tents sell with sleeping bags (and less often lanterns); mugs are the best-seller."""
    at = NOW - 3_600_000
    events = []
    for n in range(6):
        for offset, item in enumerate(("tent", "sleeping-bag", "lantern")[: 3 if n < 3 else 2]):
            events.append(
                purchase(tenant, f"c{n}", f"camp{n}", item, at + n * 10 + offset, "outdoor")
            )
    events += [
        purchase(tenant, f"m{n}", f"mug{n}", "mug", at + 100 + n, "kitchen") for n in range(10)
    ]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        commit_batch(conn, tenant, [*events, *extra], SignalSettings(), now_ms=NOW)


def commit(settings: Settings, tenant: str, *events: EnrichedEvent) -> None:
    """`events` committed as the materializer commits a batch, at `NOW`."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        commit_batch(conn, tenant, list(events), SignalSettings(), now_ms=NOW)
