"""`magnetar tenants rebuild` against the real broker, PostgreSQL, a deployed pipeline and a
gateway: imported and live history rebuilt to the same state, serving memory dropped at the
switch, every event counted once when ingest goes on through the rebuild, and a clear error
for a tenant that does not exist.

Only the rebuild runs from this checkout; the pipeline it holds is whatever the functions
worker runs (its batch commit takes the tenant's lock shared, which the rebuild holds).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from pulsar.schema import ProtobufNativeSchema

from cli.main import main
from gateway.wiring import GatewayOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.catalog_topic import publish_items
from magnetar.db.shadow_state import ShadowState, shadow_schema
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.v1 import catalog_service_pb2, events_pb2, personalization_service_pb2_grpc
from magnetar.v1 import personalization_service_pb2 as ps
from tenants.pulsar_setup import provision_pulsar
from tenants.rebuild import Rebuild, RebuildOptions
from tests.integration.gateway_harness import RunningGateway, add_tenant_row, remove_tenant_row
from tests.integration.pipeline_support import Pipeline, make_event, running_pipeline

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000
NOW_MS = int(time.time() * 1000)
ITEMS = {"mug": ("kitchen",), "tent": ("outdoor",), "lamp": ("home", "lighting")}
TYPES = (
    events_pb2.EVENT_TYPE_VIEW,
    events_pb2.EVENT_TYPE_ADD_TO_CART,
    events_pb2.EVENT_TYPE_PURCHASE,
)

# Per state table, the columns a row is told by (the ledger and the counter apart).
STATE = {
    "user_item_signals": "user_id, item_id, score, as_of, purchases, last_at",
    "user_category_affinities": "user_id, category, score, as_of",
    "user_activity": "user_id, events, purchases, first_seen, last_seen, recent_items::text",
    "item_categories": "item_id, categories, as_of",
    "item_popularity": '"window", item_id, score, as_of',
    "item_covisitation": "item_id, other_item_id, score, as_of",
}


@pytest.fixture(scope="module")
def gateway(settings: Settings) -> Iterator[RunningGateway]:
    running = RunningGateway(
        settings.merged({"grpc_port": 0}), GatewayOptions(auth_cache_ttl_s=0.2)
    )
    assert running.server.adapters.feed.listener.wait_connected(10)
    yield running
    running.stop()


def snapshot(pipe: Pipeline) -> dict[str, Any]:
    """The tenant's state, rows in key order (keys lead every row)."""
    state: dict[str, Any] = {
        table: sorted(pipe.query(f"SELECT {columns} FROM {table}"))
        for table, columns in STATE.items()
    }
    state["ledger"] = sorted(r[0] for r in pipe.query("SELECT event_id FROM processed_events"))
    state["counted"] = int(pipe.query("SELECT coalesce(sum(counted), 0) FROM ledger_counts")[0][0])
    return state


def same_state(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Equal, scores within 1e-9: sums of decayed terms may round their last bits
    differently when batched differently."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return bool(a == b)

    return one.keys() == other.keys() and all(same(one[k], other[k]) for k in one)


def history(pipe: Pipeline, topic: str, prefix: str, count: int, start_ms: int) -> None:
    """`count` events of 6 users in sessions of 4 (10 minutes apart, 2 hours between):
    `count` / 6 / 4 sessions of 2 hours from `start_ms` on."""
    producer = pipe.client.create_producer(
        topic, schema=ProtobufNativeSchema(events_pb2.Event), batching_enabled=False
    )
    try:
        for n in range(count):
            user, k = n % 6, n // 6  # the user's k-th event
            session, step = divmod(k, 4)
            at = start_ms + session * 2 * 3600_000 + step * 600_000
            item = list(ITEMS)[(k + user) % 3]
            event = make_event(f"{prefix}{n}", f"u{user}", item, occurred_at_ms=at)
            event.type = TYPES[k % 3]
            producer.send_async(event, None, partition_key=f"u{user}")
        producer.flush()
    finally:
        producer.close()


def _recent_items(address: str, key: str, user: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = personalization_service_pb2_grpc.PersonalizationServiceStub(channel)
        reply = stub.GetUserProfile(
            ps.GetUserProfileRequest(user_id=user),
            metadata=[("authorization", f"Bearer {key}")],
            timeout=10,
        )
    return [r.item_id for r in reply.profile.recent_items]


def _owner_execute(settings: Settings, tenant: str, sql: str) -> None:
    """A write nobody announces: what serving memory cannot know about by itself."""
    with psycopg.connect(settings.database_owner_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        conn.execute(sql)


@pytest.mark.timeout(300)
def test_imported_and_live_history_rebuild_to_the_same_state_and_serving_follows(
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
    gateway: RunningGateway,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with running_pipeline(settings, pulsar_admin, prefix="rebuild") as pipe:
        add_tenant_row(settings, pipe.tenant)
        try:
            read, _ = key_store.create(pipe.tenant, [Scope.READ], "rebuild test")
            items = [
                catalog_service_pb2.Item(item_id=i, title=i, categories=c, price=2.0)
                for i, c in ITEMS.items()
            ]
            publish_items(pipe.client, pipe.tenant, items)
            time.sleep(2)  # the pipeline's catalog follower has them before the first event
            history(pipe, pipe.topics.imports, "old", 360, NOW_MS - 60 * DAY_MS)
            pipe.wait_for(lambda: pipe.counted() == 360, timeout_s=120, what="history counted")
            history(pipe, pipe.topics.raw, "new", 120, NOW_MS - 12 * 3600_000)
            pipe.wait_for(lambda: pipe.counted() == 480, timeout_s=120, what="live counted")
            before = snapshot(pipe)
            assert before["user_category_affinities"] and before["item_covisitation"]

            # Damage the state where nobody hears it, and let a gateway keep the damage.
            _owner_execute(
                settings,
                pipe.tenant,
                "UPDATE user_activity SET events = events + 1000, recent_items = '[]'::jsonb "
                "WHERE user_id = 'u1'",
            )
            _owner_execute(settings, pipe.tenant, "DELETE FROM item_covisitation")
            assert not _recent_items(gateway.address, read.secret, "u1")
            assert not same_state(snapshot(pipe), before)

            assert main(["tenants", "rebuild", pipe.tenant]) == 0
            err = capsys.readouterr().err
            assert "7 days, 20,480 MiB per topic" in err and "warning" not in err
            assert "messages replayed" in err and "480" in err
            assert f"{pipe.tenant} now serves the rebuilt state" in err

            after = snapshot(pipe)
            assert same_state(after, before), [
                k for k in before if not same_state({k: before[k]}, {k: after[k]})
            ]
            # The switch was announced: the gateway dropped what it held of the tenant.
            deadline = time.monotonic() + 5
            while not _recent_items(gateway.address, read.secret, "u1"):
                assert time.monotonic() < deadline, "the gateway kept serving the old state"
                time.sleep(0.05)
            with psycopg.connect(settings.database_owner_url) as conn:
                schemas = conn.execute(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                    (shadow_schema(pipe.tenant),),
                ).fetchone()
            assert schemas == (0,), "the shadow schema was left behind"

            # The pipeline goes on counting on top of the rebuilt state, each event once.
            history(pipe, pipe.topics.raw, "after", 30, NOW_MS - 4 * 3600_000)
            history(pipe, pipe.topics.raw, "new", 12, NOW_MS - 12 * 3600_000)  # repeats
            pipe.wait_for(lambda: pipe.counted() == 510, timeout_s=60, what="counted after")
            time.sleep(2)
            assert snapshot(pipe)["counted"] == 510
        finally:
            remove_tenant_row(settings, pipe.tenant)


@pytest.mark.timeout(300)
def test_a_rebuild_during_live_ingest_counts_every_event_once(
    settings: Settings, pulsar_admin: PulsarAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second's comparison between the catch-up and the switch: whatever the pipeline
    # committed then would be lost to the switch if the hold did not hold it.
    compare = ShadowState.unreplayed

    def slowly(shadow: ShadowState) -> int:
        time.sleep(1)
        return compare(shadow)

    monkeypatch.setattr(ShadowState, "unreplayed", slowly)
    with running_pipeline(settings, pulsar_admin, prefix="rebuild") as pipe:
        stop = threading.Event()
        sent: list[str] = []
        users: Counter[str] = Counter()

        def stream() -> None:
            producer = pipe.producer()
            try:
                n = 0
                while not stop.is_set() and n < 20_000:
                    user = f"u{n % 25}"
                    pipe.send(producer, [make_event(f"live{n}", user, f"i{n % 17}")])
                    sent.append(f"live{n}")
                    users[user] += 1
                    n += 1
                    time.sleep(0.003)
            finally:
                producer.close()

        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        try:
            pipe.wait_for(lambda: len(sent) >= 800, timeout_s=60, what="800 sent")
            with Rebuild(settings, pipe.tenant, RebuildOptions(max_hold_s=10)) as rebuild:
                rebuild.open()
                rebuild.replay()
                at_switch = len(sent)
                report = rebuild.switch()
            assert report.switched, report
            assert report.counts.counted >= 800
            pipe.wait_for(lambda: len(sent) >= at_switch + 300, timeout_s=60, what="300 more")
            assert len(sent) > at_switch, "ingest did not go on through the switch"
        finally:
            stop.set()
            sender.join(30)
        total = len(sent)
        pipe.wait_for(lambda: pipe.counted() >= total, timeout_s=120, what="all counted")
        time.sleep(3)  # anything counted twice would show by now
        state = snapshot(pipe)
        assert state["ledger"] == sorted(sent)
        assert state["counted"] == total
        activity = {row[0]: row[1] for row in state["user_activity"]}
        assert activity == dict(users)


def test_rebuilding_a_tenant_that_does_not_exist_says_so(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tenants", "rebuild", "no-such-tenant-7f3a"]) == 1
    err = capsys.readouterr().err
    assert "tenant 'no-such-tenant-7f3a' does not exist" in err
    assert "magnetar tenants list" in err


@pytest.fixture
def topics_only(settings: Settings, pulsar_admin: PulsarAdmin) -> Iterator[Pipeline]:
    """A tenant's topics and no pipeline: its live state is whatever the test writes."""
    tenant = f"rebuild-{uuid.uuid4().hex[:8]}"
    topics = provision_pulsar(pulsar_admin, tenant)
    client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
    try:
        yield Pipeline(settings, pulsar_admin, topics, client)
    finally:
        client.close()
        for namespace in pulsar_admin.namespaces(tenant):
            pulsar_admin.delete_namespace(namespace)
        pulsar_admin.delete_tenant(tenant)
        _owner_execute(settings, tenant, "DELETE FROM processed_events")
        for table in STATE:
            _owner_execute(settings, tenant, f"DELETE FROM {table}")
        _owner_execute(settings, tenant, "DELETE FROM ledger_counts")


def test_a_rebuild_that_would_lose_counted_history_switches_only_when_told(
    settings: Settings, topics_only: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = topics_only
    history(pipe, pipe.topics.raw, "kept", 24, NOW_MS - 12 * 3600_000)
    # An event the live state counted whose message the topics no longer hold.
    _owner_execute(
        settings,
        pipe.tenant,
        "INSERT INTO processed_events (tenant_id, event_id, committed_at) "
        f"VALUES ('{pipe.tenant}', 'gone', now())",
    )
    _owner_execute(
        settings,
        pipe.tenant,
        f"INSERT INTO ledger_counts (tenant_id, shard, counted) VALUES ('{pipe.tenant}', 0, 1)",
    )

    assert main(["tenants", "rebuild", pipe.tenant]) == 1
    err = capsys.readouterr().err
    assert "not switched" in err and "1 events the topics no longer hold" in err
    assert "--allow-history-loss" in err
    assert snapshot(pipe)["user_activity"] == []  # the live state is untouched

    assert main(["tenants", "rebuild", pipe.tenant, "--allow-history-loss"]) == 0
    state = snapshot(pipe)
    assert sum(row[1] for row in state["user_activity"]) == 24
    assert state["counted"] == 24
    # The lost event's id stays in the ledger: a late repeat of it is still refused.
    assert "gone" in state["ledger"] and len(state["ledger"]) == 25


def test_a_second_rebuild_of_a_tenant_waits_for_the_first_one_to_finish(
    settings: Settings, topics_only: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    with Rebuild(settings, topics_only.tenant) as first:
        first.open()
        assert main(["tenants", "rebuild", topics_only.tenant]) == 1
        assert "is already running" in capsys.readouterr().err
        # The refused one did not touch the running one's shadow.
        first.replay()
        assert first.switch().switched
