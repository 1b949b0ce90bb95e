"""Tenant lifecycle against the real broker (auth on), functions worker and PostgreSQL.

Through the admin plane's TenantService (events through the public gateway): onboarding
creates everything with the plan's policies and a working pipeline; updates reach Pulsar; keys are issued and revoked;
offboarding leaves nothing of the tenant in Pulsar or PostgreSQL, checked by listing. Then
the reconciler's promises: two concurrent creations → one wins; a process killed in the
middle of onboarding leaves a record that the next CreateTenant resumes from; the CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_tokens import tenant_role
from magnetar.settings import Settings
from magnetar.topics import PIPELINE_FUNCTION, PIPELINE_FUNCTIONS, TenantTopics, subscription_of
from magnetar.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    events_pb2,
    tenant_service_pb2_grpc,
)
from magnetar.v1 import tenant_service_pb2 as pb
from tenants.function_state import FunctionStateStorage
from tenants.model import StepState, TenantState
from tenants.plans import PLANS
from tenants.store import tenant_tables
from tenants.wiring import TenantPlatform, build_tenant_platform
from tests.integration.gateway_harness import (
    RunningAdmin,
    RunningGateway,
)

pytestmark = pytest.mark.integration

Stub = tenant_service_pb2_grpc.TenantServiceStub


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def failure(call: Callable[[], Any]) -> tuple[grpc.StatusCode, dict[str, Any]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    status = rpc_status.from_call(caught.value)
    details: dict[str, Any] = {}
    for detail in status.details if status else ():
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(cls.DESCRIPTOR):
                unpacked = cls()
                detail.Unpack(unpacked)
                details[cls.__name__] = unpacked
    return caught.value.code(), details


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def platform(settings: Settings) -> Iterator[TenantPlatform]:
    engine = make_engine(settings.database_url, pool_size=2)
    built = build_tenant_platform(settings, make_sessionmaker(engine))
    yield built
    built.close()
    engine.dispose()


@pytest.fixture
def tenant_id(platform: TenantPlatform) -> Iterator[str]:
    """A fresh id; whatever a test leaves of it is offboarded afterwards."""
    name = f"tn-{uuid.uuid4().hex[:10]}"
    yield name
    if platform.store.get(name) is not None:
        platform.admin.delete(name)


@pytest.fixture(scope="module")
def stub(admin_plane: RunningAdmin) -> Iterator[Stub]:
    with grpc.insecure_channel(admin_plane.address) as channel:
        yield Stub(channel)


def leftovers(settings: Settings, admin: PulsarAdmin, tenant: str) -> dict[str, Any]:
    """Everything of `tenant` that can still be listed in Pulsar and PostgreSQL."""
    topics = TenantTopics(tenant)
    found: dict[str, Any] = {
        "pulsar tenant": tenant in admin.tenants(),
        "namespaces": admin.namespaces(tenant),
        "topics": [
            t
            for ns in (topics.events_namespace, topics.catalog_namespace)
            for t in admin.topics(ns)
        ],
        "functions": admin.functions(tenant, "events"),
        "schema": admin.get_schema(topics.raw) if tenant in admin.tenants() else None,
        "function state": FunctionStateStorage(settings.pulsar_state_storage_url).exists(tenant),
    }
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        found["tenants row"] = conn.execute(
            "SELECT count(*) FROM tenants WHERE tenant_id = %s", (tenant,)
        ).fetchone()
        with conn.transaction():
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
            tables = [
                str(t)
                for (t,) in conn.execute(
                    "SELECT DISTINCT table_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND column_name = 'tenant_id' "
                    "AND table_name <> 'tenants'"
                )
            ]
            for table in tables:
                count = conn.execute(
                    f'SELECT count(*) FROM "{table}" WHERE tenant_id = %s', (tenant,)
                ).fetchone()
                found[f"rows of {table}"] = count
    return found


NOTHING_LEFT = {
    "pulsar tenant": False,
    "namespaces": [],
    "topics": [],
    "functions": [],
    "schema": None,
    "function state": False,
    "tenants row": (0,),
}


def test_onboarding_through_the_admin_plane_then_offboarding_leaves_nothing(
    stub: Stub,
    gateway: RunningGateway,
    admin_key: str,
    tenant_id: str,
    settings: Settings,
    pulsar_admin: PulsarAdmin,
) -> None:
    admin = bearer(admin_key)
    created = stub.CreateTenant(
        pb.CreateTenantRequest(
            tenant_id=tenant_id,
            display_name="Lifecycle test",
            plan="free",
            quotas=pb.TenantQuotas(ingest_events_per_second=500, ingest_burst=1000),
        ),
        metadata=admin,
        timeout=120,
    )
    assert created.tenant.state == pb.TENANT_STATE_ACTIVE
    assert created.tenant.quotas.ingest_events_per_second == 500
    assert created.tenant.quotas.retention_minutes == PLANS["free"].retention_minutes

    # Pulsar: the namespaces with the plan's policies, the role's grants, topics, schemas.
    topics = TenantTopics(tenant_id)
    for namespace in (topics.events_namespace, topics.catalog_namespace):
        policies = pulsar_admin.namespace_policies(namespace)
        assert policies["deduplicationEnabled"] is True
        assert policies["schema_compatibility_strategy"] == "BACKWARD_TRANSITIVE"
        quota = policies["backlog_quota_map"]["destination_storage"]
        assert (quota["limitSize"], quota["policy"]) == (
            PLANS["free"].backlog_quota_bytes,
            "producer_request_hold",
        )
        assert (
            policies["retention_policies"]["retentionSizeInMB"] == PLANS["free"].retention_size_mb
        )
        [rate] = policies["publishMaxMessageRate"].values()
        assert rate["publishThrottlingRateInMsg"] == PLANS["free"].publish_messages_per_second
        # Pulsar keeps a role's actions as a set: their order varies.
        granted = pulsar_admin.namespace_permissions(namespace)
        assert {role: sorted(actions) for role, actions in granted.items()} == {
            tenant_role(tenant_id): ["consume", "produce"]
        }
    assert pulsar_admin.partitions(topics.raw) == 4
    assert {topics.dlq, topics.catalog} <= set(
        pulsar_admin.topics(topics.events_namespace) + pulsar_admin.topics(topics.catalog_namespace)
    )
    assert pulsar_admin.get_schema(topics.raw) is not None

    # The pipeline runs and counts an event sent with the first ingest key.
    def running() -> bool:
        functions = stub.GetTenant(
            pb.GetTenantRequest(tenant_id=tenant_id), metadata=admin, timeout=30
        ).tenant.functions
        return [f.name for f in functions] == list(PIPELINE_FUNCTIONS) and all(
            f.running_instances == f.instances for f in functions
        )

    wait_for(running, "the tenant's functions to run")
    event = events_pb2.Event(event_id="e-1", user_id="u-1", item_id="sku-1")
    event.type = events_pb2.EVENT_TYPE_VIEW
    event.occurred_at.GetCurrentTime()
    ingest = event_service_pb2_grpc.EventServiceStub(grpc.insecure_channel(gateway.address))
    reply = ingest.Ingest(
        event_service_pb2.IngestRequest(events=[event]),
        metadata=bearer(created.ingest_key.secret),
        timeout=30,
    )
    assert reply.accepted_count == 1
    code, _ = failure(
        lambda: ingest.Ingest(
            event_service_pb2.IngestRequest(events=[event]),
            metadata=bearer(created.read_key.secret),
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED

    def counted() -> bool:
        return bool(
            leftovers(settings, pulsar_admin, tenant_id)["rows of processed_events"] == (1,)
        )

    wait_for(counted, "the event to be counted in PostgreSQL")
    shown = stub.GetTenant(pb.GetTenantRequest(tenant_id=tenant_id), metadata=admin).tenant
    assert [s.name for s in shown.provisioning_steps][:2] == ["pulsar_tenant", "namespaces"]
    assert {(b.topic, b.subscription) for b in shown.backlogs} >= {
        (topics.raw, subscription_of(PIPELINE_FUNCTION))
    }

    # Updates reach Pulsar.
    updated = stub.UpdateTenant(
        pb.UpdateTenantRequest(
            tenant=pb.Tenant(
                tenant_id=tenant_id,
                display_name="Renamed",
                quotas=pb.TenantQuotas(publish_messages_per_second=321),
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=["display_name", "quotas.publish_messages_per_second"]
            ),
        ),
        metadata=admin,
    ).tenant
    assert updated.display_name == "Renamed"
    for namespace in (topics.events_namespace, topics.catalog_namespace):
        [rate] = pulsar_admin.namespace_policies(namespace)["publishMaxMessageRate"].values()
        assert rate["publishThrottlingRateInMsg"] == 321

    listed = stub.ListTenants(pb.ListTenantsRequest(page_size=1000), metadata=admin).tenants
    assert tenant_id in [t.tenant_id for t in listed]

    # A new key works; once revoked it stops working within seconds.
    key = stub.CreateApiKey(
        pb.CreateApiKeyRequest(tenant_id=tenant_id, scopes=[pb.API_KEY_SCOPE_INGEST]),
        metadata=admin,
    ).api_key
    ingest.Ingest(event_service_pb2.IngestRequest(events=[event]), metadata=bearer(key.secret))
    stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(tenant_id=tenant_id, key_id=key.api_key.key_id), metadata=admin
    )

    def refused(secret: str) -> bool:
        code = code_of(
            lambda: ingest.Ingest(
                event_service_pb2.IngestRequest(events=[event]), metadata=bearer(secret)
            )
        )
        return bool(code == grpc.StatusCode.UNAUTHENTICATED)

    wait_for(lambda: refused(key.secret), "the revoked key to be refused", timeout_s=6)
    keys = stub.ListApiKeys(
        pb.ListApiKeysRequest(tenant_id=tenant_id, include_revoked=True), metadata=admin
    ).api_keys
    assert len(keys) == 3 and sum(k.HasField("revoke_time") for k in keys) == 1

    # Offboarding: nothing of the tenant is left anywhere.
    removed = stub.DeleteTenant(
        pb.DeleteTenantRequest(tenant_id=tenant_id), metadata=admin, timeout=120
    ).removed
    assert f"pulsar tenant {tenant_id}" in removed
    assert f"function {tenant_id}/events/{PIPELINE_FUNCTION}" in removed
    assert f"function state {tenant_id.replace('-', '_')}_events" in removed
    left = leftovers(settings, pulsar_admin, tenant_id)
    assert {k: left[k] for k in NOTHING_LEFT} == NOTHING_LEFT
    assert {k: v for k, v in left.items() if k.startswith("rows of") and v != (0,)} == {}
    code, details = failure(
        lambda: stub.GetTenant(pb.GetTenantRequest(tenant_id=tenant_id), metadata=admin)
    )
    assert (code, details["ErrorInfo"].reason) == (grpc.StatusCode.NOT_FOUND, "TENANT_NOT_FOUND")
    assert (
        failure(
            lambda: stub.DeleteTenant(pb.DeleteTenantRequest(tenant_id=tenant_id), metadata=admin)
        )[0]
        == grpc.StatusCode.NOT_FOUND
    )
    wait_for(
        lambda: refused(created.ingest_key.secret),
        "the deleted tenant's keys to be refused",
        timeout_s=6,
    )


def test_an_invalid_slug_is_invalid_argument_naming_the_field(stub: Stub, admin_key: str) -> None:
    code, details = failure(
        lambda: stub.CreateTenant(
            pb.CreateTenantRequest(tenant_id="Not_A_Slug", display_name="x"),
            metadata=bearer(admin_key),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["tenant_id"]


def test_of_two_concurrent_creations_one_wins_the_other_is_already_exists(
    stub: Stub, admin_key: str, tenant_id: str
) -> None:
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def create() -> None:
        start.wait()
        try:
            stub.CreateTenant(
                pb.CreateTenantRequest(tenant_id=tenant_id, display_name="Race"),
                metadata=bearer(admin_key),
                timeout=120,
            )
            outcomes.append("created")
        except grpc.RpcError as error:
            outcomes.append(error.code().name)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert sorted(outcomes) == ["ALREADY_EXISTS", "created"]


CRASHING_ONBOARDER = textwrap.dedent(
    """
    import sys, time
    from magnetar.db.engine import make_engine, make_sessionmaker
    from magnetar.settings import Settings
    from tenants.wiring import build_tenant_platform

    settings = Settings.load()
    platform = build_tenant_platform(settings, make_sessionmaker(make_engine(settings.database_url)))

    def hang(tenant_id):
        print("at functions", flush=True)
        time.sleep(600)

    platform.admin._reconciler._functions.deploy = hang
    platform.admin.create(sys.argv[1], "Crash test", "free", {})
    """
)


def test_a_process_killed_mid_onboarding_leaves_a_record_the_next_create_resumes(
    platform: TenantPlatform, tenant_id: str, pulsar_admin: PulsarAdmin
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_ONBOARDER, tenant_id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "at functions"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    record = platform.store.get(tenant_id)
    assert record is not None and record.state is TenantState.PROVISIONING
    done = [s.name for s in record.steps if s.state is StepState.DONE]
    assert done == ["pulsar_tenant", "namespaces", "pulsar_role", "topics", "schemas"]
    assert pulsar_admin.partitions(TenantTopics(tenant_id).raw) == 4

    # The dead process's lease went with its connection; the same request resumes.
    onboarded = platform.admin.create(tenant_id, "Crash test", "free", {})

    assert onboarded.record.state is TenantState.ACTIVE
    for before, after in zip(record.steps[:5], onboarded.record.steps[:5], strict=True):
        assert after.updated_at == before.updated_at  # done steps were not run again
    assert onboarded.record.step("functions").state is StepState.DONE
    assert sorted(pulsar_admin.functions(tenant_id, "events")) == [PIPELINE_FUNCTION]


def test_the_cli_creates_shows_updates_lists_and_deletes(
    settings: Settings, tenant_id: str, pulsar_admin: PulsarAdmin
) -> None:
    def magnetar(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "tenants", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    created = magnetar(
        "create", tenant_id, "--display-name", "CLI", "--plan", "standard",
        "--quota", "ingest_events_per_second=77",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    secrets = dict(line.split("=", 1) for line in created.stdout.splitlines())
    assert set(secrets) == {"INGEST_KEY", "READ_KEY"}
    assert secrets["INGEST_KEY"].startswith(f"mgk.{tenant_id}.")

    again = magnetar("create", tenant_id, "--display-name", "CLI")
    assert again.returncode == 1 and "already exists" in again.stderr

    updated = magnetar("update", tenant_id, "--quota", "publish_messages_per_second=1234")
    assert updated.returncode == 0, updated.stderr
    [rate] = pulsar_admin.namespace_policies(f"{tenant_id}/events")[
        "publishMaxMessageRate"
    ].values()
    assert rate["publishThrottlingRateInMsg"] == 1234

    origins = magnetar(
        "update", tenant_id, "--allowed-origin", "HTTPS://Shop.Example",
        "--allowed-origin", "http://localhost:3000",
    )  # fmt: skip
    assert origins.returncode == 0, origins.stderr
    assert "https://shop.example http://localhost:3000" in origins.stdout
    bad = magnetar("update", tenant_id, "--allowed-origin", "https://shop.example/path")
    assert bad.returncode == 1 and "tenant.allowed_origins[0]" in bad.stderr

    shown = magnetar("show", tenant_id)
    assert shown.returncode == 0 and PIPELINE_FUNCTION in shown.stdout and "77" in shown.stdout
    assert "https://shop.example" in shown.stdout
    assert tenant_id in magnetar("list", "--page-size", "1000").stdout

    deleted = magnetar("delete", tenant_id, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"removed pulsar tenant {tenant_id}" in deleted.stdout
    assert magnetar("show", tenant_id).returncode == 1
    assert tenant_id not in pulsar_admin.tenants()


def test_the_purge_finds_every_tenant_scoped_table(settings: Settings) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            tables = tenant_tables(connection)
    finally:
        engine.dispose()
    # Those this repository had when the reconciler was written; new ones join by themselves.
    assert {
        "api_keys",
        "processed_events",
        "user_item_signals",
        "user_category_affinities",
        "user_activity",
        "item_categories",
        "item_popularity",
        "item_covisitation",
        "catalog_items",
        "erased_users",
    } <= set(tables)
    assert "tenants" not in tables
