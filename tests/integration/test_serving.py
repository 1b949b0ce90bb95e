"""Serving through a real gateway over gRPC, on real PostgreSQL state and Pulsar topics.

State is written with the materializer's own `commit_batch` (the whole pipeline is the e2e
suite's business); everything else goes through the gateway's three serving services.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import grpc
import psycopg
import pulsar
import pytest

from functions.logic.validation import DEFAULT_POLICY
from functions.wire import is_erasure_marker
from gateway.wiring import GatewayOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.db.state_writer import commit_batch
from magnetar.db.user_erasure import user_tables
from magnetar.personalization.settings import SignalSettings
from magnetar.processes import free_port
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from magnetar.v1 import catalog_service_pb2 as cat
from magnetar.v1 import events_pb2
from magnetar.v1 import personalization_service_pb2 as pb
from magnetar.v1 import user_service_pb2 as users
from tests.e2e.grpc_support import Stubs, failure, stubs
from tests.integration.gateway_harness import RunningGateway, pulsar_client, read_all
from tests.integration.serving_support import (
    NOW,
    ServingTenant,
    purchase,
    seed_shop,
    serving_tenant,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[Stubs]:
    with grpc.insecure_channel(gateway.address) as channel:
        yield stubs(channel)


def _ids(items: Any) -> list[str]:
    return [item.item_id for item in items]


def _item(item_id: str, title: str, category: str, available: bool = True) -> cat.Item:
    return cat.Item(
        item_id=item_id, title=title, categories=[category], price=10.0, available=available
    )


# -- personalization ---------------------------------------------------------------------


def test_a_buyer_gets_what_was_bought_together_with_a_titled_reason_and_filters_apply(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    t = shop.tenant_id
    seed_shop(settings, t, purchase(t, "b", "b1", "tent", NOW - 60_000, "outdoor"))
    client.catalog.UpsertItems(
        cat.UpsertItemsRequest(items=[_item("tent", "Dome Tent", "outdoor")]),
        metadata=shop.manage,
    )
    no_repeats = pb.RecommendationFilter(exclude_purchased=True)
    reply = client.personalization.Recommend(
        pb.RecommendRequest(user_id="b", k=3, filter=no_repeats), metadata=shop.read
    )
    top = reply.items[0]
    assert top.item_id == "sleeping-bag"
    assert top.reason.kind == pb.REASON_KIND_CO_VISITATION
    assert top.reason.related_item_id == "tent"
    assert top.reason.text == "bought together with Dome Tent"
    assert not reply.cold_start
    assert "tent" not in _ids(reply.items)

    kitchen = client.personalization.Recommend(
        pb.RecommendRequest(
            user_id="b", k=3, filter=pb.RecommendationFilter(categories=["kitchen"])
        ),
        metadata=shop.read,
    )
    assert _ids(kitchen.items) == ["mug"]
    excluded = client.personalization.Recommend(
        pb.RecommendRequest(
            user_id="b", k=5, filter=pb.RecommendationFilter(exclude_item_ids=["sleeping-bag"])
        ),
        metadata=shop.read,
    )
    assert "sleeping-bag" not in _ids(excluded.items)


def test_unknown_and_session_only_users_get_trending_and_an_empty_tenant_answers_empty(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    empty = client.personalization.Recommend(
        pb.RecommendRequest(user_id="nobody", k=5), metadata=shop.read
    )
    assert (list(empty.items), empty.cold_start) == ([], True)

    seed_shop(settings, shop.tenant_id)
    cold = client.personalization.Recommend(
        pb.RecommendRequest(user_id="nobody", k=2), metadata=shop.read
    )
    assert cold.cold_start
    assert _ids(cold.items)[0] == "mug"
    assert {i.reason.kind for i in cold.items} == {pb.REASON_KIND_TRENDING}
    session = client.personalization.Recommend(
        pb.RecommendRequest(session_id="s-1", k=2, context_item_ids=["tent"]),
        metadata=shop.read,
    )
    assert session.cold_start
    assert session.items[0].item_id == "sleeping-bag"
    assert session.items[0].reason.related_item_id == "tent"


def test_similar_items_trending_and_profiles_read_the_state(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    t = shop.tenant_id
    seed_shop(settings, t, purchase(t, "b", "b1", "tent", NOW - 60_000, "outdoor"))
    similar = client.personalization.SimilarItems(
        pb.SimilarItemsRequest(item_id="tent", k=2), metadata=shop.read
    )
    assert _ids(similar.items) == ["sleeping-bag", "lantern"]
    trending = client.personalization.Trending(
        pb.TrendingRequest(window=pb.TRENDING_WINDOW_DAY, k=1), metadata=shop.read
    )
    assert _ids(trending.items) == ["mug"]
    outdoor = client.personalization.Trending(
        pb.TrendingRequest(window=pb.TRENDING_WINDOW_WEEK, category="outdoor", k=5),
        metadata=shop.read,
    )
    assert set(_ids(outdoor.items)) == {"tent", "sleeping-bag", "lantern"}
    profile = client.personalization.GetUserProfile(
        pb.GetUserProfileRequest(user_id="b"), metadata=shop.read
    ).profile
    assert profile.subject_id == "b"
    assert [r.item_id for r in profile.recent_items] == ["tent"]
    assert profile.top_categories[0].category == "outdoor"
    assert profile.last_seen_at.ToMilliseconds() == NOW - 60_000


def test_errors_carry_their_status_codes_and_field_violations(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    recommend = client.personalization.Recommend
    for k in (0, 101):
        bad_k = failure(
            partial(recommend, pb.RecommendRequest(user_id="u", k=k), metadata=shop.read)
        )
        assert bad_k.code == grpc.StatusCode.INVALID_ARGUMENT
        assert list(bad_k.violations) == ["k"]
    nobody = failure(lambda: recommend(pb.RecommendRequest(k=3), metadata=shop.read))
    assert nobody.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in nobody.violations

    seed_shop(settings, shop.tenant_id)
    unknown = failure(
        lambda: client.personalization.SimilarItems(
            pb.SimilarItemsRequest(item_id="nope", k=3), metadata=shop.read
        )
    )
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "ITEM_NOT_FOUND")
    no_window = failure(
        lambda: client.personalization.Trending(pb.TrendingRequest(k=3), metadata=shop.read)
    )
    assert no_window.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(no_window.violations) == ["window"]
    no_profile = failure(
        lambda: client.personalization.GetUserProfile(
            pb.GetUserProfileRequest(user_id="nobody"), metadata=shop.read
        )
    )
    assert (no_profile.code, no_profile.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


def test_each_rpc_needs_its_scope(client: Stubs, shop: ServingTenant) -> None:
    denied = [
        lambda: client.personalization.Recommend(
            pb.RecommendRequest(user_id="u", k=1), metadata=shop.ingest
        ),
        lambda: client.catalog.GetItem(cat.GetItemRequest(item_id="x"), metadata=shop.ingest),
        lambda: client.catalog.UpsertItems(
            cat.UpsertItemsRequest(items=[cat.Item(item_id="x")]), metadata=shop.read
        ),
        lambda: client.catalog.DeleteItem(cat.DeleteItemRequest(item_id="x"), metadata=shop.read),
        lambda: client.users.DeleteUser(users.DeleteUserRequest(user_id="u"), metadata=shop.read),
    ]
    for call in denied:
        assert failure(call).code == grpc.StatusCode.PERMISSION_DENIED


def test_catalog_writes_and_erasure_need_manage_which_the_ingest_key_lacks(
    client: Stubs, shop: ServingTenant
) -> None:
    """The INGEST key ships inside client apps: it must not rewrite the catalog or erase
    users (docs/serving.md, "Scopes")."""
    writes = {
        "UpsertItems": lambda key: client.catalog.UpsertItems(
            cat.UpsertItemsRequest(items=[_item("x", "X", "c")]), metadata=key
        ),
        "DeleteItem": lambda key: client.catalog.DeleteItem(
            cat.DeleteItemRequest(item_id="x"), metadata=key
        ),
        "DeleteUser": lambda key: client.users.DeleteUser(
            users.DeleteUserRequest(user_id="u"), metadata=key
        ),
    }
    for name, call in writes.items():
        denied = failure(partial(call, shop.ingest))
        assert (name, denied.code, denied.reason, denied.metadata) == (
            name,
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPE_MISSING",
            {"required_scope": "manage"},
        )
        assert "manage" in denied.message
    # The MANAGE key does each, in order (the item exists when it is deleted).
    for call in writes.values():
        call(shop.manage)


# -- catalog -----------------------------------------------------------------------------


def _catalog_records(settings: Settings, tenant: str, expect: int) -> list[tuple[str, bytes]]:
    client = pulsar_client(settings)
    try:
        reader = client.create_reader(TenantTopics(tenant).catalog, pulsar.MessageId.earliest)
        found: list[tuple[str, bytes]] = []
        while len(found) < expect:
            message = reader.read_next(timeout_millis=10_000)
            found.append((message.partition_key(), message.data()))
        reader.close()
        return found
    finally:
        client.close()


def test_items_go_to_postgres_and_the_compacted_topic_and_a_deletion_tombstones_them(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    mug = cat.Item(
        item_id="mug",
        title="Blue Mug",
        categories=["home", "kitchen"],
        price=9.5,
        available=True,
        attributes={"brand": "acme"},
    )
    reply = client.catalog.UpsertItems(
        cat.UpsertItemsRequest(items=[mug, _item("tent", "Dome Tent", "outdoor")]),
        metadata=shop.manage,
    )
    assert reply.upserted_count == 2
    stored = client.catalog.GetItem(cat.GetItemRequest(item_id="mug"), metadata=shop.read).item
    assert (stored.title, list(stored.categories), stored.price) == (
        "Blue Mug",
        ["home", "kitchen"],
        9.5,
    )
    assert dict(stored.attributes) == {"brand": "acme"}
    assert abs(stored.update_time.ToMilliseconds() - time.time() * 1000) < 60_000

    deleted = client.catalog.DeleteItem(cat.DeleteItemRequest(item_id="mug"), metadata=shop.manage)
    assert deleted.item.title == "Blue Mug"
    on_topic = _catalog_records(settings, shop.tenant_id, expect=3)
    assert [key for key, _ in on_topic] == ["mug", "tent", "mug"]
    assert cat.Item.FromString(on_topic[0][1]).title == "Blue Mug"
    assert on_topic[2][1] == b""  # the tombstone
    gone = failure(
        lambda: client.catalog.GetItem(cat.GetItemRequest(item_id="mug"), metadata=shop.read)
    )
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "ITEM_NOT_FOUND")
    again = failure(
        lambda: client.catalog.DeleteItem(
            cat.DeleteItemRequest(item_id="mug"), metadata=shop.manage
        )
    )
    assert again.code == grpc.StatusCode.NOT_FOUND


def test_an_invalid_item_fails_the_whole_batch(client: Stubs, shop: ServingTenant) -> None:
    batch = [_item("lamp", "Lamp", "home"), cat.Item(item_id="bad", title="t" * 513)]
    bad = failure(
        lambda: client.catalog.UpsertItems(
            cat.UpsertItemsRequest(items=batch), metadata=shop.manage
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(bad.violations) == ["items[1].title"]
    assert (
        failure(
            lambda: client.catalog.GetItem(cat.GetItemRequest(item_id="lamp"), metadata=shop.read)
        ).code
        == grpc.StatusCode.NOT_FOUND
    )
    empty = failure(
        lambda: client.catalog.UpsertItems(cat.UpsertItemsRequest(), metadata=shop.manage)
    )
    assert list(empty.violations) == ["items"]


def test_unavailable_and_deleted_items_leave_every_result(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    seed_shop(settings, shop.tenant_id)

    def everywhere() -> list[list[str]]:
        recommended = client.personalization.Recommend(
            pb.RecommendRequest(user_id="nobody", k=10), metadata=shop.read
        )
        trending = client.personalization.Trending(
            pb.TrendingRequest(window=pb.TRENDING_WINDOW_DAY, k=10), metadata=shop.read
        )
        similar = client.personalization.SimilarItems(
            pb.SimilarItemsRequest(item_id="tent", k=10), metadata=shop.read
        )
        return [_ids(recommended.items), _ids(trending.items), _ids(similar.items)]

    assert all("sleeping-bag" in found for found in everywhere())
    client.catalog.UpsertItems(
        cat.UpsertItemsRequest(items=[_item("sleeping-bag", "Bag", "outdoor", available=False)]),
        metadata=shop.manage,
    )
    assert not any("sleeping-bag" in found for found in everywhere())
    client.catalog.UpsertItems(
        cat.UpsertItemsRequest(items=[_item("sleeping-bag", "Bag", "outdoor")]),
        metadata=shop.manage,
    )
    assert all("sleeping-bag" in found for found in everywhere())
    client.catalog.DeleteItem(cat.DeleteItemRequest(item_id="sleeping-bag"), metadata=shop.manage)
    assert not any("sleeping-bag" in found for found in everywhere())


def test_tenants_see_only_their_own_catalog_and_state(
    client: Stubs,
    shop: ServingTenant,
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
) -> None:
    seed_shop(settings, shop.tenant_id, purchase(shop.tenant_id, "b", "b", "tent", NOW, "outdoor"))
    client.catalog.UpsertItems(
        cat.UpsertItemsRequest(items=[_item("tent", "Dome Tent", "outdoor")]),
        metadata=shop.manage,
    )
    with serving_tenant(settings, pulsar_admin, key_store) as other:
        hidden = failure(
            lambda: client.catalog.GetItem(cat.GetItemRequest(item_id="tent"), metadata=other.read)
        )
        assert hidden.code == grpc.StatusCode.NOT_FOUND
        theirs = client.personalization.Recommend(
            pb.RecommendRequest(user_id="b", k=5), metadata=other.read
        )
        assert (list(theirs.items), theirs.cold_start) == ([], True)


# -- users -------------------------------------------------------------------------------


def _user_rows(settings: Settings, tenant: str, user: str) -> dict[str, int]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        return {
            table.name: conn.execute(
                f"SELECT count(*) FROM {table.name} WHERE tenant_id = %s AND user_id = %s",
                (tenant, user),
            ).fetchone()[0]  # type: ignore[index]
            for table in user_tables()
        }


def test_delete_user_erases_every_user_table_reports_it_and_keeps_late_events_out(
    client: Stubs, shop: ServingTenant, settings: Settings
) -> None:
    t = shop.tenant_id
    bought = [
        purchase(t, "b", "b1", item, NOW - 60_000 + n, "outdoor")
        for n, item in enumerate(("tent", "lamp"))
    ]
    seed_shop(settings, t, *bought)
    assert _user_rows(settings, t, "b") == {
        "user_item_signals": 2,
        "user_category_affinities": 1,
        "user_activity": 1,
    }
    reply = client.users.DeleteUser(users.DeleteUserRequest(user_id="b"), metadata=shop.manage)
    assert {d.table: d.count for d in reply.deleted} == {
        "user_item_signals": 2,
        "user_category_affinities": 1,
        "user_activity": 1,
    }
    # Now plus the pipeline's future skew: an event accepted before it stays out too.
    ahead = reply.deleted_before.ToMilliseconds() - time.time() * 1000
    assert abs(ahead - DEFAULT_POLICY.max_future_skew_ms) < 60_000
    assert set(_user_rows(settings, t, "b").values()) == {0}
    assert (
        failure(
            lambda: client.personalization.GetUserProfile(
                pb.GetUserProfileRequest(user_id="b"), metadata=shop.read
            )
        ).code
        == grpc.StatusCode.NOT_FOUND
    )
    late = purchase(t, "b", "b1", "mug", reply.deleted_before.ToMilliseconds() - 1, "kitchen")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert commit_batch(conn, t, [late], SignalSettings(), now_ms=NOW).erased == 1
    assert set(_user_rows(settings, t, "b").values()) == {0}

    nobody = client.users.DeleteUser(
        users.DeleteUserRequest(anonymous_id="never-seen"), metadata=shop.manage
    )
    assert {d.table: d.count for d in nobody.deleted} == dict.fromkeys(
        ("user_item_signals", "user_category_affinities", "user_activity"), 0
    )
    invalid = failure(
        lambda: client.users.DeleteUser(users.DeleteUserRequest(), metadata=shop.manage)
    )
    assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT
    # Each erasure sent the pipeline a marker, keyed by its subject, to drop its sessions.
    markers = read_all(settings, TenantTopics(t).raw, expect=2)
    assert sorted(m.partition_key() for m in markers) == ["b", "never-seen"]
    assert all(is_erasure_marker(events_pb2.Event.FromString(m.data())) for m in markers)


# -- PostgreSQL down ---------------------------------------------------------------------


def test_postgres_unavailable_answers_unavailable_never_unknown(
    shop: ServingTenant, settings: Settings, key_store: ApiKeyStore
) -> None:
    closed = settings.merged(
        {
            "grpc_port": 0,
            "database_url": f"postgresql://magnetar_app@127.0.0.1:{free_port()}/magnetar",
        }
    )
    down = RunningGateway(closed, GatewayOptions(auth_cache_ttl_s=60), key_lookup=key_store)
    try:
        with grpc.insecure_channel(down.address) as channel:
            client = stubs(channel)
            read, write = shop.read, shop.manage
            calls = {
                "Recommend": lambda: client.personalization.Recommend(
                    pb.RecommendRequest(user_id="u", k=3), metadata=read, timeout=20
                ),
                "SimilarItems": lambda: client.personalization.SimilarItems(
                    pb.SimilarItemsRequest(item_id="i", k=3), metadata=read, timeout=20
                ),
                "Trending": lambda: client.personalization.Trending(
                    pb.TrendingRequest(window=pb.TRENDING_WINDOW_DAY, k=3),
                    metadata=read,
                    timeout=20,
                ),
                "GetUserProfile": lambda: client.personalization.GetUserProfile(
                    pb.GetUserProfileRequest(user_id="u"), metadata=read, timeout=20
                ),
                "GetItem": lambda: client.catalog.GetItem(
                    cat.GetItemRequest(item_id="i"), metadata=read, timeout=20
                ),
                "UpsertItems": lambda: client.catalog.UpsertItems(
                    cat.UpsertItemsRequest(items=[cat.Item(item_id="i")]),
                    metadata=write,
                    timeout=20,
                ),
                "DeleteItem": lambda: client.catalog.DeleteItem(
                    cat.DeleteItemRequest(item_id="i"), metadata=write, timeout=20
                ),
                "DeleteUser": lambda: client.users.DeleteUser(
                    users.DeleteUserRequest(user_id="u"), metadata=write, timeout=20
                ),
            }
            for name, call in calls.items():
                failed = failure(call)
                assert (name, failed.code, failed.reason) == (
                    name,
                    grpc.StatusCode.UNAVAILABLE,
                    "DATABASE_UNAVAILABLE",
                )
    finally:
        down.stop()
