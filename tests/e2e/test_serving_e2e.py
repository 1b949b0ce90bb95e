"""Serving end to end: events through EventService, the real pipeline (dedupe, enrich,
materialize on the functions worker), PostgreSQL, and back out through the serving services.

Every action goes through gRPC. Waiting uses gRPC too (a recommendation or a profile that
shows what was sent), except where the test must prove something is *absent*: there it
waits for the pipeline's processed-event ledger to hold the events, then checks every
user-keyed table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest

from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.user_erasure import user_tables
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import catalog_service_pb2 as cat
from magnetar.v1 import event_service_pb2 as ingest
from magnetar.v1 import events_pb2 as ev
from magnetar.v1 import personalization_service_pb2 as pb
from magnetar.v1 import user_service_pb2 as users
from tests.e2e.grpc_support import Stubs, bearer, failure, stubs
from tests.integration.gateway_harness import RunningGateway, add_tenant_row, remove_tenant_row
from tests.integration.pipeline_support import Pipeline, running_pipeline

pytestmark = pytest.mark.e2e

T = TypeVar("T")
CATALOG = {
    "tent": ("Dome Tent", "outdoor"),
    "sleeping-bag": ("Down Sleeping Bag", "outdoor"),
    "lantern": ("Lantern", "outdoor"),
    "mug": ("Blue Mug", "kitchen"),
    "kettle": ("Kettle", "kitchen"),
}


@dataclass
class Shop:
    pipe: Pipeline
    client: Stubs
    read: list[tuple[str, str]]
    write: list[tuple[str, str]]

    def send(self, *events: ev.Event) -> int:
        """Ingest; returns when the gateway accepted them (epoch ms of the reply)."""
        reply = self.client.events.Ingest(
            ingest.IngestRequest(events=events, all_or_nothing=True),
            metadata=self.write,
            timeout=10,
        )
        assert reply.accepted_count == len(events)
        return int(time.time() * 1000)

    def recommend(self, **fields: Any) -> pb.RecommendResponse:
        reply: pb.RecommendResponse = self.client.personalization.Recommend(
            pb.RecommendRequest(**fields), metadata=self.read, timeout=10
        )
        return reply

    def counted(self, event_ids: Sequence[str]) -> bool:
        rows = self.pipe.query(
            "SELECT count(*) FROM processed_events WHERE event_id = ANY(%s)", list(event_ids)
        )
        return int(rows[0][0]) == len(event_ids)

    def rows_of(self, user: str) -> dict[str, int]:
        return {
            table.name: int(
                self.pipe.query(f"SELECT count(*) FROM {table.name} WHERE user_id = %s", user)[0][0]
            )
            for table in user_tables()
        }


def event(user: str, item: str, kind: int, session: str, at_ms: int | None = None) -> ev.Event:
    message = ev.Event(
        event_id=uuid.uuid4().hex,
        user_id=user,
        type=kind,  # type: ignore[arg-type]
        item_id=item,
        session_id=session,
    )
    message.occurred_at.FromMilliseconds(at_ms or int(time.time() * 1000))
    return message


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def shop(
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
    gateway: RunningGateway,
) -> Iterator[Shop]:
    """A tenant with its pipeline running, its catalog loaded and shoppers' history counted:
    tents sell with sleeping bags (and less often lanterns); mugs are the best-seller."""
    with running_pipeline(settings, pulsar_admin, prefix="e2e") as pipe:
        add_tenant_row(settings, pipe.tenant)
        try:
            read, _ = key_store.create(pipe.tenant, [Scope.READ], "e2e")
            # The shop's backend: it sends events, writes the catalog and erases users.
            write, _ = key_store.create(pipe.tenant, [Scope.INGEST, Scope.MANAGE], "e2e")
            with grpc.insecure_channel(gateway.address) as channel:
                shop = Shop(pipe, stubs(channel), bearer(read.secret), bearer(write.secret))
                _open(shop)
                yield shop
        finally:
            gateway.run(gateway.server.adapters.publisher.close_tenant(pipe.tenant))
            remove_tenant_row(settings, pipe.tenant)


def _open(shop: Shop) -> None:
    items = [
        cat.Item(item_id=i, title=title, categories=[category], price=10, available=True)
        for i, (title, category) in CATALOG.items()
    ]
    shop.client.catalog.UpsertItems(cat.UpsertItemsRequest(items=items), metadata=shop.write)

    # enrich follows the catalog topic: its categories reach events within moments. A probe
    # shopper keeps looking at the tent until their profile shows its category.
    def categorised() -> bool | None:
        shop.send(event("probe", "tent", ev.EVENT_TYPE_VIEW, "probe"))
        time.sleep(0.5)
        try:
            profile = shop.client.personalization.GetUserProfile(
                pb.GetUserProfileRequest(user_id="probe"), metadata=shop.read
            ).profile
        except grpc.RpcError:
            return None
        return True if [c.category for c in profile.top_categories] == ["outdoor"] else None

    eventually(categorised, "the catalog's categories on events")
    history = []
    for n in range(6):
        basket = ("tent", "sleeping-bag", "lantern")[: 3 if n < 3 else 2]
        history += [event(f"camper-{n}", i, ev.EVENT_TYPE_PURCHASE, f"camp-{n}") for i in basket]
    history += [event(f"cook-{n}", "mug", ev.EVENT_TYPE_PURCHASE, f"cook-{n}") for n in range(10)]
    shop.send(*history)
    eventually(
        lambda: True if shop.counted([e.event_id for e in history]) else None,
        "the shoppers' history counted",
    )


def _ids(reply: Any) -> list[str]:
    return [item.item_id for item in reply.items]


def test_a_viewer_and_buyer_gets_recommendations_reflecting_it_within_a_second(
    shop: Shop,
) -> None:
    assert shop.recommend(user_id="alice", k=3).cold_start
    accepted_at = shop.send(
        event("alice", "lantern", ev.EVENT_TYPE_VIEW, "alice-1"),
        event("alice", "tent", ev.EVENT_TYPE_PURCHASE, "alice-1"),
    )

    def reflected() -> pb.RecommendResponse | None:
        reply = shop.recommend(
            user_id="alice", k=3, filter=pb.RecommendationFilter(exclude_purchased=True)
        )
        return reply if reply.items and reply.items[0].item_id == "sleeping-bag" else None

    reply = eventually(reflected, "alice's purchase in her recommendations", timeout_s=30)
    seen_after_ms = int(time.time() * 1000) - accepted_at
    print(f"alice's purchase reflected {seen_after_ms} ms after the gateway accepted it")
    assert not reply.cold_start
    top = reply.items[0].reason
    assert (top.kind, top.related_item_id) == (pb.REASON_KIND_CO_VISITATION, "tent")
    assert top.text == "bought together with Dome Tent"
    assert "tent" not in _ids(reply)
    assert seen_after_ms <= 1000, f"reflected {seen_after_ms} ms after acceptance"


def test_filters_and_the_cold_start_path_behave_as_documented(shop: Shop) -> None:
    shop.send(event("bob", "tent", ev.EVENT_TYPE_PURCHASE, "bob-1"))
    eventually(
        lambda: True if not shop.recommend(user_id="bob", k=1).cold_start else None,
        "bob's purchase counted",
    )
    everything = _ids(shop.recommend(user_id="bob", k=10))
    assert everything[0] == "tent"  # his own purchase, by repeat affinity
    assert "tent" not in _ids(
        shop.recommend(user_id="bob", k=10, filter=pb.RecommendationFilter(exclude_purchased=True))
    )
    assert "tent" not in _ids(
        shop.recommend(user_id="bob", k=10, filter=pb.RecommendationFilter(exclude_viewed=True))
    )
    assert _ids(
        shop.recommend(user_id="bob", k=10, filter=pb.RecommendationFilter(categories=["kitchen"]))
    ) == ["mug"]
    without = shop.recommend(
        user_id="bob", k=10, filter=pb.RecommendationFilter(exclude_item_ids=["sleeping-bag"])
    )
    assert "sleeping-bag" not in _ids(without)

    stranger = shop.recommend(user_id="stranger", k=2)
    assert stranger.cold_start
    assert _ids(stranger)[0] == "mug"
    assert {i.reason.kind for i in stranger.items} == {pb.REASON_KIND_TRENDING}
    browsing = shop.recommend(anonymous_id="visitor-9", k=2, context_item_ids=["tent"])
    assert browsing.cold_start
    assert browsing.items[0].item_id == "sleeping-bag"
    assert browsing.items[0].reason.related_item_id == "tent"
    assert "tent" not in _ids(browsing)
    session_only = shop.recommend(session_id="sess-3", k=2, context_item_ids=["tent"])
    assert _ids(session_only) == _ids(browsing)

    shop.client.catalog.DeleteItem(cat.DeleteItemRequest(item_id="mug"), metadata=shop.write)
    assert "mug" not in _ids(shop.recommend(user_id="stranger", k=5))


def test_delete_user_leaves_nothing_and_late_events_do_not_bring_the_user_back(
    shop: Shop,
) -> None:
    first = [
        event("carol", "tent", ev.EVENT_TYPE_VIEW, "carol-1"),
        event("carol", "mug", ev.EVENT_TYPE_PURCHASE, "carol-1"),
    ]
    shop.send(*first)
    eventually(lambda: True if shop.counted([e.event_id for e in first]) else None, "carol counted")
    assert shop.rows_of("carol")["user_activity"] == 1

    # In flight: accepted just before the erasure, committed (if at all) after it.
    in_flight = [event("carol", "kettle", ev.EVENT_TYPE_PURCHASE, "carol-2") for _ in range(5)]
    shop.send(*in_flight)
    reply = shop.client.users.DeleteUser(
        users.DeleteUserRequest(user_id="carol"), metadata=shop.write
    )
    deleted = {d.table: d.count for d in reply.deleted}
    assert set(deleted) == {t.name for t in user_tables()}
    assert deleted["user_activity"] <= 1
    erased_before = reply.deleted_before.ToMilliseconds()

    # Late: sent after the erasure, but it happened before it.
    late = event(
        "carol", "lantern", ev.EVENT_TYPE_PURCHASE, "carol-3", at_ms=erased_before - 60_000
    )
    shop.send(late)
    everything = [e.event_id for e in (*in_flight, late)]
    eventually(lambda: True if shop.counted(everything) else None, "in-flight and late events")
    assert shop.rows_of("carol") == dict.fromkeys(deleted, 0)
    gone = failure(
        lambda: shop.client.personalization.GetUserProfile(
            pb.GetUserProfileRequest(user_id="carol"), metadata=shop.read
        )
    )
    assert gone.code == grpc.StatusCode.NOT_FOUND
    assert shop.recommend(user_id="carol", k=3).cold_start

    # What happens after the erasure counts: the user may come back, with only that. The
    # tombstone reaches the pipeline's future skew past the erasure (an event accepted
    # before it may be stamped that far ahead), so "after" starts at `deleted_before`.
    back = event("carol", "kettle", ev.EVENT_TYPE_VIEW, "carol-4", at_ms=erased_before)
    shop.send(back)
    profile = eventually(lambda: _profile(shop, "carol"), "carol's new event in her profile")
    assert [r.item_id for r in profile.recent_items] == ["kettle"]


def _profile(shop: Shop, user: str) -> pb.UserProfile | None:
    try:
        reply: pb.GetUserProfileResponse = shop.client.personalization.GetUserProfile(
            pb.GetUserProfileRequest(user_id=user), metadata=shop.read
        )
    except grpc.RpcError:
        return None
    return reply.profile
