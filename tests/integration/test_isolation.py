"""Tenant isolation at every layer, against the real gateway, broker (auth on) and PostgreSQL.

* gRPC: tenant A's keys cannot read or change B's data through any RPC, and learn nothing
  of B's existence: asking for B's user, item or tenant answers exactly what asking for one
  that never existed answers (same status, same ErrorInfo reason, same items).
* Pulsar: A's role token can produce to and consume from A's topics (the control) and
  none of B's, nor change any policy; no process command line carries a token.
* PostgreSQL: see test_isolation_rls.py. Quotas under load: test_isolation_noisy.py.

Tenants A and B are onboarded by the real reconciler (Pulsar and PostgreSQL) without their
pipeline functions (an in-memory deployer): the pipeline is not what isolation is about,
and B's state is written by the materializer's own writer instead.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pulsar
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.method_scopes import method_scopes
from magnetar import stack_layout
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.db.state_writer import commit_batch
from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from magnetar.v1 import (
    catalog_service_pb2,
    catalog_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    events_pb2,
    personalization_service_pb2,
    personalization_service_pb2_grpc,
    tenant_service_pb2,
    tenant_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)
from tenants.admin import TenantAdmin
from tenants.credentials import TenantRoleTokens
from tenants.model import Onboarded
from tenants.pulsar_port import translated
from tenants.reconciler import Reconciler
from tenants.store import PostgresTenantStore
from tenants.wiring import role_token_signer
from tests.integration.gateway_harness import RunningGateway
from tests.tenant_fakes import FakeFunctionDeployer

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1000)
B_USER, B_ITEMS = "b-user", ("b-item-1", "b-item-2")
SHARED_ITEM = "shared-item"  # an item id both tenants happen to use
A_ITEMS = ("a-item-1", "a-item-2")
NOBODY, NO_ITEM = "never-seen-user", "never-seen-item"
B_CATEGORY = "b-secret-category"


@dataclass(frozen=True)
class Keys:
    """A tenant's secrets: the first two keys of onboarding and a MANAGE key."""

    ingest: str
    read: str
    manage: str


@dataclass(frozen=True)
class Pair:
    a: Onboarded
    b: Onboarded
    a_keys: Keys
    b_keys: Keys

    @property
    def a_id(self) -> str:
        return self.a.record.tenant_id

    @property
    def b_id(self) -> str:
        return self.b.record.tenant_id


def _purchases(tenant: str, user: str, session: str, items: tuple[str, ...]) -> list[EnrichedEvent]:
    return [
        EnrichedEvent(
            event_id=uuid.uuid4().hex,
            tenant_id=tenant,
            user_id=user,
            session_id=session,
            type=records.PURCHASE,
            item_id=item,
            occurred_at=NOW - 60_000 + n,
            categories=(B_CATEGORY,) if item.startswith("b-") else ("a-category",),
        )
        for n, item in enumerate(items)
    ]


@pytest.fixture(scope="module")
def pair(settings: Settings) -> Iterator[Pair]:
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    pulsar_admin = PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token)
    store = PostgresTenantStore(sessions)
    reconciler = Reconciler(
        translated(pulsar_admin),
        store,
        FakeFunctionDeployer(),
        token_for=role_token_signer(settings),
    )
    admin = TenantAdmin(reconciler, store, ApiKeyStore(sessions))
    suffix = uuid.uuid4().hex[:8]
    a = admin.create(f"iso-a-{suffix}", "Tenant A", "standard")
    b = admin.create(f"iso-b-{suffix}", "Tenant B", "standard")
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for tenant, user, items in (
                (b.record.tenant_id, B_USER, (*B_ITEMS, SHARED_ITEM)),
                (b.record.tenant_id, "b-other", (B_ITEMS[0], SHARED_ITEM)),
                (a.record.tenant_id, "a-user", (*A_ITEMS, SHARED_ITEM)),
            ):
                events = _purchases(tenant, user, f"{user}-s", items)
                commit_batch(conn, tenant, events, SignalSettings(), now_ms=NOW)
        a_keys, b_keys = (
            Keys(
                t.ingest_key.minted.secret,
                t.read_key.minted.secret,
                admin.create_key(t.record.tenant_id, [Scope.MANAGE], "isolation").minted.secret,
            )
            for t in (a, b)
        )
        yield Pair(a, b, a_keys, b_keys)
    finally:
        for onboarded in (a, b):
            admin.delete(onboarded.record.tenant_id)
        pulsar_admin.close()
        engine.dispose()


def bearer(secret: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {secret}")]


# -- gRPC ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a caller learns from one call: status, ErrorInfo reason, ids in the reply."""

    code: str
    reason: str = ""
    ids: tuple[str, ...] = ()


def outcome(call: Callable[[], Any], ids: Callable[[Any], list[str]] = lambda _: []) -> Outcome:
    try:
        reply = call()
    except grpc.RpcError as error:
        status = rpc_status.from_call(error)
        reason = ""
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
        return Outcome(error.code().name, reason)
    return Outcome("OK", "", tuple(ids(reply)))


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.events = event_service_pb2_grpc.EventServiceStub(channel)
        self.personalization = personalization_service_pb2_grpc.PersonalizationServiceStub(channel)
        self.catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        self.users = user_service_pb2_grpc.UserServiceStub(channel)
        self.tenants = tenant_service_pb2_grpc.TenantServiceStub(channel)


@pytest.fixture(scope="module")
def stubs(gateway: RunningGateway) -> Iterator[Stubs]:
    with grpc.insecure_channel(gateway.address) as channel:
        yield Stubs(channel)


def _item_ids(reply: Any) -> list[str]:
    return [item.item_id for item in reply.items]


def _event(user: str, item: str) -> events_pb2.Event:
    event = events_pb2.Event(event_id=uuid.uuid4().hex, user_id=user, item_id=item)
    event.type = events_pb2.EVENT_TYPE_VIEW
    event.occurred_at.GetCurrentTime()
    return event


@dataclass(frozen=True)
class Target:
    """What A aims at: B's user, item and tenant id, or ones that never existed."""

    user: str
    item: str
    tenant: str
    category: str
    # The catalog item A writes: another of B's, so that reading probes never meet an item
    # A itself created under one of B's ids.
    written_item: str


Probe = Callable[[Stubs, Keys, Target], Outcome]


def _tenant_probe(method: str) -> Probe:
    """A tenant's key (any scope) on TenantService, about the target tenant."""

    def probe(stubs: Stubs, a: Keys, target: Target) -> Outcome:
        request_type = getattr(tenant_service_pb2, f"{method}Request")
        fields = request_type.DESCRIPTOR.fields_by_name
        request = request_type()
        if "tenant_id" in fields:
            request.tenant_id = target.tenant
        if "tenant" in fields:
            request.tenant.tenant_id = target.tenant
        if "key_id" in fields:
            request.key_id = "0123456789abcdef"
        call = getattr(stubs.tenants, method)

        def with_key(secret: str) -> Outcome:
            return outcome(lambda: call(request, metadata=bearer(secret)))

        results = {with_key(key) for key in (a.ingest, a.read, a.manage)}
        assert len(results) == 1, results
        return results.pop()

    return probe


P = personalization_service_pb2
C = catalog_service_pb2
PROBES: dict[str, Probe] = {
    "/magnetar.v1.PersonalizationService/Recommend": lambda s, a, t: outcome(
        lambda: s.personalization.Recommend(
            P.RecommendRequest(user_id=t.user, k=20, context_item_ids=[t.item]),
            metadata=bearer(a.read),
        ),
        _item_ids,
    ),
    "/magnetar.v1.PersonalizationService/SimilarItems": lambda s, a, t: outcome(
        lambda: s.personalization.SimilarItems(
            P.SimilarItemsRequest(item_id=t.item, k=20, user_id=t.user),
            metadata=bearer(a.read),
        ),
        _item_ids,
    ),
    "/magnetar.v1.PersonalizationService/Trending": lambda s, a, t: outcome(
        lambda: s.personalization.Trending(
            P.TrendingRequest(k=50, category=t.category, window=P.TRENDING_WINDOW_DAY),
            metadata=bearer(a.read),
        ),
        _item_ids,
    ),
    "/magnetar.v1.PersonalizationService/GetUserProfile": lambda s, a, t: outcome(
        lambda: s.personalization.GetUserProfile(
            P.GetUserProfileRequest(user_id=t.user), metadata=bearer(a.read)
        ),
        lambda reply: [r.item_id for r in reply.profile.recent_items],
    ),
    "/magnetar.v1.CatalogService/GetItem": lambda s, a, t: outcome(
        lambda: s.catalog.GetItem(C.GetItemRequest(item_id=t.item), metadata=bearer(a.read)),
        lambda reply: [reply.item.title],
    ),
    "/magnetar.v1.CatalogService/DeleteItem": lambda s, a, t: outcome(
        lambda: s.catalog.DeleteItem(
            C.DeleteItemRequest(item_id=t.item), metadata=bearer(a.manage)
        ),
        lambda reply: [reply.item.title],
    ),
    "/magnetar.v1.CatalogService/UpsertItems": lambda s, a, t: outcome(
        lambda: s.catalog.UpsertItems(
            C.UpsertItemsRequest(
                items=[
                    C.Item(
                        item_id=t.written_item,
                        title="written by A",
                        categories=["x"],
                        price=1,
                        available=True,
                    )
                ]
            ),
            metadata=bearer(a.manage),
        ),
        lambda reply: [str(reply.upserted_count)],
    ),
    "/magnetar.v1.UserService/DeleteUser": lambda s, a, t: outcome(
        lambda: s.users.DeleteUser(
            user_service_pb2.DeleteUserRequest(user_id=t.user),
            metadata=bearer(a.manage),
        ),
        lambda reply: [f"{d.table}={d.count}" for d in reply.deleted],
    ),
    "/magnetar.v1.EventService/Ingest": lambda s, a, t: outcome(
        lambda: s.events.Ingest(
            event_service_pb2.IngestRequest(events=[_event(t.user, t.item)]),
            metadata=bearer(a.ingest),
        ),
        lambda reply: [str(reply.accepted_count)],
    ),
    "/magnetar.v1.EventService/StreamEvents": lambda s, a, t: outcome(
        lambda: list(
            s.events.StreamEvents(
                iter(
                    [
                        event_service_pb2.StreamEventsRequest(
                            batch_id=1, events=[_event(t.user, t.item)]
                        )
                    ]
                ),
                metadata=bearer(a.ingest),
            )
        ),
        lambda replies: [str(r.accepted_count) for r in replies],
    ),
    "/magnetar.v1.EventService/ImportEvents": lambda s, a, t: outcome(
        lambda: list(
            s.events.ImportEvents(
                iter(
                    [
                        event_service_pb2.ImportEventsRequest(
                            batch_id=1, events=[_event(t.user, t.item)]
                        )
                    ]
                ),
                metadata=bearer(a.ingest),
            )
        ),
        lambda replies: [f"{r.accepted_count}/{r.tenant_counted_events}" for r in replies],
    ),
    **{
        f"/magnetar.v1.TenantService/{m}": _tenant_probe(m)
        for m in (
            "CreateTenant",
            "GetTenant",
            "ListTenants",
            "UpdateTenant",
            "DeleteTenant",
            "CreateApiKey",
            "ListApiKeys",
            "RevokeApiKey",
        )
    },
}


def test_every_rpc_of_the_contract_has_an_isolation_probe() -> None:
    # A new RPC without a probe here fails this test: isolation is proven per RPC.
    assert set(PROBES) == set(method_scopes())


def raw_messages_in(admin: PulsarAdmin, tenant: str) -> int:
    stats = admin.topic_stats(TenantTopics(tenant).raw, partitioned=True)
    return int(stats.get("msgInCounter", 0))


def b_state(settings: Settings, tenant: str) -> dict[str, Any]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            for table in ("user_activity", "user_item_signals", "item_popularity", "catalog_items")
        }


@pytest.mark.parametrize("method", sorted(PROBES))
def test_a_key_of_a_learns_nothing_of_b_through_any_rpc(
    method: str,
    pair: Pair,
    stubs: Stubs,
    settings: Settings,
    pulsar_admin: PulsarAdmin,
) -> None:
    # B has its items in its catalog too; B's own key sees them (the control).
    stubs.catalog.UpsertItems(
        C.UpsertItemsRequest(
            items=[
                C.Item(
                    item_id=item,
                    title="B's secret",
                    categories=[B_CATEGORY],
                    price=9,
                    available=True,
                )
                for item in B_ITEMS
            ]
        ),
        metadata=bearer(pair.b_keys.manage),
    )

    def b_titles() -> list[str]:
        return [
            stubs.catalog.GetItem(
                C.GetItemRequest(item_id=item), metadata=bearer(pair.b.read_key.minted.secret)
            ).item.title
            for item in B_ITEMS
        ]

    assert b_titles() == ["B's secret"] * 2
    b_before = b_state(settings, pair.b_id)
    raw_before = raw_messages_in(pulsar_admin, pair.b_id)
    probe = PROBES[method]

    fresh = uuid.uuid4().hex[:8]
    at_b = probe(stubs, pair.a_keys, Target(B_USER, B_ITEMS[0], pair.b_id, B_CATEGORY, B_ITEMS[1]))
    nothing = Target(NOBODY, NO_ITEM, f"iso-none-{fresh}", "never-seen-category", f"new-{fresh}")
    at_nothing = probe(stubs, pair.a_keys, nothing)

    # The same answer as for something that never existed: status, reason, payload shape.
    assert (at_b.code, at_b.reason) == (at_nothing.code, at_nothing.reason)
    assert at_b.code in ("OK", "NOT_FOUND", "PERMISSION_DENIED", "UNIMPLEMENTED"), at_b
    assert len(at_b.ids) == len(at_nothing.ids)
    leaked = [i for i in at_b.ids if i.startswith("b-") or "B's" in i]
    assert leaked == []
    if method.startswith("/magnetar.v1.TenantService/"):
        # The public gateway does not serve TenantService at all (the admin plane does).
        assert at_b.code == "UNIMPLEMENTED"
    # And B's data is as it was: nothing A did reached it.
    assert b_state(settings, pair.b_id) == b_before
    assert raw_messages_in(pulsar_admin, pair.b_id) == raw_before
    assert b_titles() == ["B's secret"] * 2
    profile = stubs.personalization.GetUserProfile(
        P.GetUserProfileRequest(user_id=B_USER), metadata=bearer(pair.b.read_key.minted.secret)
    ).profile
    assert {r.item_id for r in profile.recent_items} >= set(B_ITEMS)


def test_the_same_item_id_in_two_tenants_yields_each_tenant_its_own_neighbours(
    pair: Pair, stubs: Stubs
) -> None:
    def similar(key: str) -> set[str]:
        reply = stubs.personalization.SimilarItems(
            P.SimilarItemsRequest(item_id=SHARED_ITEM, k=20), metadata=bearer(key)
        )
        return set(_item_ids(reply))

    assert similar(pair.a.read_key.minted.secret) == set(A_ITEMS)
    assert similar(pair.b.read_key.minted.secret) == set(B_ITEMS)


def test_a_key_naming_b_with_as_secret_is_unauthenticated_like_any_unknown_key(
    pair: Pair, stubs: Stubs
) -> None:
    _, _, key_id, random = pair.a.read_key.minted.secret.split(".")
    forged = f"mgk.{pair.b_id}.{key_id}.{random}"
    unknown = f"mgk.iso-none-{uuid.uuid4().hex[:6]}.{key_id}.{random}"

    def trending(secret: str) -> Outcome:
        return outcome(
            lambda: stubs.personalization.Trending(
                P.TrendingRequest(k=5, window=P.TRENDING_WINDOW_DAY), metadata=bearer(secret)
            )
        )

    assert trending(forged) == trending(unknown) == Outcome("UNAUTHENTICATED", "API_KEY_INVALID")


# -- Pulsar -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def role_tokens(settings: Settings) -> TenantRoleTokens:
    return TenantRoleTokens.from_file(settings.pulsar_token_secret_key_file)


@pytest.fixture
def a_client(settings: Settings, pair: Pair, role_tokens: TenantRoleTokens) -> Iterator[Any]:
    client = pulsar.Client(
        settings.pulsar_service_url,
        authentication=pulsar.AuthenticationToken(role_tokens.token_for(pair.a_id)),
        operation_timeout_seconds=10,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    yield client
    client.close()


def test_as_pulsar_token_produces_and_consumes_only_as_topics(a_client: Any, pair: Pair) -> None:
    mine, theirs = TenantTopics(pair.a_id), TenantTopics(pair.b_id)
    # The control: A's own topics work with A's token.
    producer = a_client.create_producer(mine.raw)
    producer.send(b"own")
    producer.close()
    a_client.subscribe(mine.catalog, f"iso-{uuid.uuid4().hex[:6]}").close()

    refused = []
    for topic in (
        theirs.raw,
        theirs.dlq,
        theirs.catalog,
        f"persistent://{pair.b_id}/events/created-by-a",
    ):
        actions: list[Callable[[str], Any]] = [
            lambda t: a_client.create_producer(t),
            lambda t: a_client.subscribe(t, "a-snooping"),
            lambda t: a_client.create_reader(t, pulsar.MessageId.earliest),
        ]
        for action in actions:
            with pytest.raises(pulsar.AuthorizationError):
                action(topic)
            refused.append(topic)
    assert len(refused) == 12


def test_as_pulsar_token_cannot_administer_anything(
    settings: Settings, pair: Pair, role_tokens: TenantRoleTokens
) -> None:
    headers = {"Authorization": f"Bearer {role_tokens.token_for(pair.a_id)}"}
    b_events = f"{pair.b_id}/events"
    with httpx.Client(base_url=settings.pulsar_admin_url, headers=headers) as http:
        # The control: listing its own topics is a consume-level right A has.
        assert http.get(f"/admin/v2/persistent/{pair.a_id}/events").status_code == 200
        denied = {
            "list B's topics": http.get(f"/admin/v2/persistent/{b_events}"),
            "read B's policies": http.get(f"/admin/v2/namespaces/{b_events}"),
            "grant itself on B": http.post(
                f"/admin/v2/namespaces/{b_events}/permissions/{role_tokens.role(pair.a_id)}",
                json=["produce", "consume"],
            ),
            "lift its own publish rate": http.post(
                f"/admin/v2/namespaces/{pair.a_id}/events/publishRate",
                json={"publishThrottlingRateInMsg": -1, "publishThrottlingRateInByte": -1},
            ),
            "list tenants": http.get("/admin/v2/tenants"),
            "list B's functions": http.get(f"/admin/v3/functions/{b_events}"),
        }
    assert {what: r.status_code in (401, 403) for what, r in denied.items()} == dict.fromkeys(
        denied, True
    )


def test_no_process_command_line_carries_a_pulsar_token(
    settings: Settings, pair: Pair, role_tokens: TenantRoleTokens
) -> None:
    secrets = {
        "superuser": settings.pulsar_admin_token,
        "tenant A": role_tokens.token_for(pair.a_id),
        "tenant B": role_tokens.token_for(pair.b_id),
    }
    exposed = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        if line.startswith("python") and "python_instance_main.py" in line:
            # The worker hands function instances its credentials as a file, not a value.
            assert "--client_auth_params file://" in line
        exposed += [
            f"{who} in pid {cmdline.parent.name}" for who, t in secrets.items() if t in line
        ]
    assert exposed == []
    # Instances started later get theirs the same way: from the worker's configuration.
    worker = stack_layout.layouts()[0].worker_conf.read_text()
    assert re.search(r"^brokerClientAuthenticationParameters: file://", worker, re.MULTILINE)
    assert settings.pulsar_admin_token not in worker
