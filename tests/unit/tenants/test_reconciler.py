"""The reconciler over in-memory ports: onboarding, resuming after a crash at any step,
concurrent creation, updates applied to Pulsar, offboarding that leaves nothing behind."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from magnetar.api_keys import Scope, secret_matches
from magnetar.errors import AlreadyExists, NotFound, Unavailable
from magnetar.pulsar_tokens import tenant_role
from magnetar.topics import TenantTopics
from tenants import pulsar_setup
from tenants.model import ONBOARDING_STEPS, StepState, TenantSpec, TenantState
from tenants.plans import MIB, PLANS
from tenants.reconciler import Reconciler
from tests.tenant_fakes import FakeFunctionDeployer, FakePulsarAdmin, InMemoryTenantStore

SPEC = TenantSpec("acme", "Acme shop", "free", PLANS["free"])


class World:
    def __init__(self) -> None:
        self.pulsar = FakePulsarAdmin()
        self.store = InMemoryTenantStore()
        self.functions = FakeFunctionDeployer()
        self.offboarded: list[tuple[str, list[str]]] = []
        self.reconciler = Reconciler(
            self.pulsar,
            self.store,
            self.functions,
            before_offboarding=[self._record_hook],
        )

    def _record_hook(self, tenant_id: str) -> None:
        # What still exists in Pulsar when the hook runs (the gateway closes producers here).
        self.offboarded.append((tenant_id, self.pulsar.namespaces(tenant_id)))


@pytest.fixture
def world() -> World:
    return World()


def test_onboarding_creates_every_part_with_the_plans_policies(world: World) -> None:
    onboarded = world.reconciler.onboard(SPEC)

    topics = TenantTopics("acme")
    assert onboarded.record.state is TenantState.ACTIVE
    assert [s.state for s in onboarded.record.steps] == [StepState.DONE] * len(ONBOARDING_STEPS)
    assert "acme" in world.pulsar.tenants()
    assert world.pulsar.pulsar_tenants["acme"] == []  # no tenant-admin roles, ever
    for namespace in (topics.events_namespace, topics.catalog_namespace):
        policies = world.pulsar.namespace_policies(namespace)
        assert policies["deduplicationEnabled"] is True
        assert policies["retention_policies"] == {
            "retentionTimeInMinutes": PLANS["free"].retention_minutes,
            "retentionSizeInMB": PLANS["free"].retention_size_mb,
        }
        quota = policies["backlog_quota_map"]["destination_storage"]
        assert quota["policy"] == "producer_request_hold"
        assert quota["limitSize"] == PLANS["free"].backlog_quota_bytes
        assert policies["schema_compatibility_strategy"] == "BACKWARD_TRANSITIVE"
        rate = policies["publishMaxMessageRate"]["standalone"]
        assert rate["publishThrottlingRateInMsg"] == PLANS["free"].publish_messages_per_second
        assert world.pulsar.namespace_permissions(namespace) == {
            tenant_role("acme"): ["consume", "produce"]
        }
    assert world.pulsar.partitioned == {topics.raw: 4, topics.imports: 4}
    assert world.pulsar.plain_topics == {topics.dlq, topics.catalog}
    assert set(world.pulsar.schema_uploads) == {topics.raw, topics.imports, topics.catalog}
    assert world.functions.deployed["acme"] == {"pipeline"}
    ingest, read = onboarded.ingest_key, onboarded.read_key
    assert ingest.stored.scopes == {Scope.INGEST} and read.stored.scopes == {Scope.READ}
    assert secret_matches(
        ingest.minted.secret, world.store.keys[("acme", ingest.stored.key_id)].secret_sha256
    )


def test_creating_an_existing_tenant_is_already_exists_and_changes_nothing(world: World) -> None:
    world.reconciler.onboard(SPEC)
    calls = len(world.pulsar.faults.calls)

    with pytest.raises(AlreadyExists):
        world.reconciler.onboard(SPEC)
    with pytest.raises(AlreadyExists):
        world.reconciler.onboard(replace(SPEC, display_name="Someone else"))
    assert len(world.pulsar.faults.calls) == calls
    assert len(world.store.keys) == 2


# The first admin call each step makes, to crash the step before it has done anything.
FIRST_CALL = {
    "pulsar_tenant": "create_tenant",
    "namespaces": "namespaces",
    "pulsar_role": "namespace_permissions",
    "topics": "partitions",
    "schemas": "get_schema",
}


@pytest.mark.parametrize("step", ONBOARDING_STEPS)
def test_a_crash_at_any_step_is_recorded_and_a_retry_resumes_there(world: World, step: str) -> None:
    if step == "functions":
        world.functions.faults.fail("deploy")
    elif step == "keys":
        world.store.faults.fail("activate")
    else:
        world.pulsar.faults.fail(FIRST_CALL[step])

    with pytest.raises((Unavailable, ConnectionError)):
        world.reconciler.onboard(SPEC)

    record = world.store.get("acme")
    assert record is not None and record.state is TenantState.FAILED
    position = ONBOARDING_STEPS.index(step)
    assert all(record.done(s) for s in ONBOARDING_STEPS[:position])
    assert record.step(step).state is StepState.FAILED
    assert "injected failure" in record.step(step).message
    assert not world.store.keys  # no key exists before the tenant is active

    before_retry = len(world.pulsar.faults.calls)
    onboarded = world.reconciler.onboard(SPEC)

    assert onboarded.record.state is TenantState.ACTIVE
    retried = world.pulsar.faults.calls[before_retry:]
    if position > 0:
        assert "create_tenant" not in retried  # steps recorded DONE are not repeated
    assert world.functions.deployed["acme"] == {"pipeline"}
    assert len(world.store.keys) == 2


def test_a_step_interrupted_half_way_completes_on_retry(world: World) -> None:
    # The events namespace is created, then setting its policies fails: the retry finds
    # one namespace, leaves it, fixes its policies and creates the other.
    world.pulsar.faults.fail("set_deduplication")

    with pytest.raises(Unavailable):
        world.reconciler.onboard(SPEC)
    assert world.pulsar.namespaces("acme") == ["acme/events"]
    world.reconciler.onboard(SPEC)

    assert world.pulsar.namespaces("acme") == ["acme/catalog", "acme/events"]
    for namespace in ("acme/catalog", "acme/events"):
        assert world.pulsar.namespace_policies(namespace)["deduplicationEnabled"] is True


def test_resuming_with_a_different_request_is_already_exists(world: World) -> None:
    world.functions.faults.fail("deploy")
    with pytest.raises(Unavailable):
        world.reconciler.onboard(SPEC)

    with pytest.raises(AlreadyExists):
        world.reconciler.onboard(replace(SPEC, plan="standard", quotas=PLANS["standard"]))


def test_of_two_concurrent_creations_one_wins_and_the_other_is_already_exists(
    world: World,
) -> None:
    inside = threading.Event()
    release = threading.Event()
    deploy = world.functions.deploy

    def slow_deploy(tenant_id: str) -> None:
        inside.set()
        release.wait(5)
        deploy(tenant_id)

    world.functions.deploy = slow_deploy  # type: ignore[method-assign]
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(world.reconciler.onboard(SPEC)))
    first.start()
    assert inside.wait(5)

    with pytest.raises(AlreadyExists):
        world.reconciler.onboard(SPEC)
    release.set()
    first.join(5)

    assert len(results) == 1
    record = world.store.get("acme")
    assert record is not None and record.state is TenantState.ACTIVE
    assert len(world.store.keys) == 2


def test_offboarding_removes_functions_topics_namespaces_tenant_and_rows(world: World) -> None:
    world.reconciler.onboard(SPEC)
    world.reconciler.onboard(replace(SPEC, tenant_id="other"))
    world.store.rows[("user_activity", "acme")] = 3
    world.store.rows[("user_activity", "other")] = 5

    removed = world.reconciler.offboard("acme")

    assert "pulsar tenant acme" in removed
    assert "namespace acme/events" in removed and "namespace acme/catalog" in removed
    assert "topic persistent://acme/events/raw" in removed
    assert "function acme/events/pipeline" in removed
    assert "3 rows of user_activity" in removed and "2 rows of api_keys" in removed
    assert "acme" not in world.pulsar.tenants() and world.pulsar.namespaces("acme") == []
    assert not any(t.startswith("persistent://acme/") for t in world.pulsar.partitioned)
    assert "acme" not in world.functions.deployed
    assert world.store.get("acme") is None
    assert not [k for k in world.store.keys if k[0] == "acme"]
    # The other tenant is untouched, and the hook ran while the namespaces still existed.
    assert world.store.rows == {("user_activity", "other"): 5}
    assert world.pulsar.namespaces("other") == ["other/catalog", "other/events"]
    assert world.offboarded == [("acme", ["acme/catalog", "acme/events"])]
    with pytest.raises(NotFound):
        world.reconciler.offboard("acme")


def test_offboarding_interrupted_part_way_resumes_and_finishes(world: World) -> None:
    world.reconciler.onboard(SPEC)
    world.pulsar.faults.fail("delete_namespace")

    with pytest.raises(ConnectionError):
        world.reconciler.offboard("acme")
    record = world.store.get("acme")
    assert record is not None and record.state is TenantState.DELETING
    with pytest.raises(AlreadyExists):
        world.reconciler.onboard(SPEC)  # a tenant being deleted is not created over

    world.reconciler.offboard("acme")
    assert world.store.get("acme") is None and "acme" not in world.pulsar.tenants()


def test_an_update_is_recorded_and_applied_to_both_namespaces(world: World) -> None:
    world.reconciler.onboard(SPEC)
    # Shrinking retention below the current backlog quota needs the quota lowered first;
    # the fake refuses the other order, as Pulsar does.
    smaller = replace(
        PLANS["free"],
        retention_size_mb=100,
        backlog_quota_bytes=50 * MIB,
        publish_messages_per_second=0,
        publish_bytes_per_second=0,
    )

    record = world.reconciler.update(replace(SPEC, quotas=smaller))

    assert record.spec.quotas == smaller
    for namespace in ("acme/events", "acme/catalog"):
        policies = world.pulsar.namespace_policies(namespace)
        assert policies["retention_policies"]["retentionSizeInMB"] == 100
        assert policies["backlog_quota_map"]["destination_storage"]["limitSize"] == 50 * MIB
        rate = policies["publishMaxMessageRate"]["standalone"]
        assert rate["publishThrottlingRateInMsg"] == -1  # 0 in the plan means no limit

    bigger = replace(smaller, retention_size_mb=4096, backlog_quota_bytes=2048 * MIB)
    world.reconciler.update(replace(SPEC, quotas=bigger))
    quota = world.pulsar.namespace_policies("acme/events")["backlog_quota_map"]
    assert quota["destination_storage"]["limitSize"] == 2048 * MIB


def test_reapplying_policies_that_match_changes_nothing(world: World) -> None:
    world.reconciler.onboard(SPEC)
    before = len(world.pulsar.faults.calls)

    changed = pulsar_setup.ensure_namespace_policies(world.pulsar, "acme/events", PLANS["free"])

    assert changed == []
    assert world.pulsar.faults.calls[before:] == ["namespace_policies"]


def test_updating_or_reading_an_unknown_tenant_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.reconciler.update(SPEC)
    with pytest.raises(NotFound):
        world.reconciler.view("acme")


def test_a_view_shows_functions_and_the_backlog_of_every_subscription(world: World) -> None:
    world.reconciler.onboard(SPEC)
    world.pulsar.subscriptions["persistent://acme/events/raw"] = {"magnetar-pipeline": 7}

    view = world.reconciler.view("acme")

    assert [f.name for f in view.functions] == ["pipeline"]
    assert [(b.topic, b.subscription, b.backlog) for b in view.backlogs] == [
        ("persistent://acme/events/raw", "magnetar-pipeline", 7)
    ]
