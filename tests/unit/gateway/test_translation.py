"""Servicers' translation between the contract's messages and the serving domain."""

from __future__ import annotations

import math

from gateway.catalog_proto import item_from_proto, item_to_proto
from gateway.personalization_service import _filter, _profile, _scored, _window
from magnetar.personalization.recommend import UserProfile
from magnetar.personalization.state import RecentItem, ScoredCategory
from magnetar.serving.catalog import CatalogItem
from magnetar.serving.personalization import ItemFilter
from magnetar.serving.reasons import Reason, ReasonKind, ServedItem
from magnetar.v1 import catalog_service_pb2, events_pb2
from magnetar.v1 import personalization_service_pb2 as pb


def test_windows_map_by_name_and_unspecified_or_unknown_is_none() -> None:
    assert _window(pb.TRENDING_WINDOW_HOUR) == "HOUR"
    assert _window(pb.TRENDING_WINDOW_WEEK) == "WEEK"
    assert _window(pb.TRENDING_WINDOW_UNSPECIFIED) is None
    assert _window(99) is None


def test_a_filter_keeps_every_field() -> None:
    message = pb.RecommendationFilter(
        exclude_purchased=True, exclude_viewed=True, exclude_item_ids=["a"], categories=["c"]
    )
    assert _filter(message) == ItemFilter(True, True, ("a",), ("c",))


def test_a_scored_item_carries_its_reason_kind_and_fields() -> None:
    reason = Reason(ReasonKind.CO_VISITATION, "tent", "", "bought together with Dome Tent")
    (message,) = _scored([ServedItem("bag", 0.5, reason)])
    assert message.item_id == "bag"
    assert message.score == 0.5
    assert message.reason.kind == pb.REASON_KIND_CO_VISITATION
    assert message.reason.related_item_id == "tent"
    assert message.reason.text == "bought together with Dome Tent"
    for kind in ReasonKind:
        (other,) = _scored([ServedItem("x", 0.0, Reason(kind))])
        assert pb.ReasonKind.Name(other.reason.kind) == f"REASON_KIND_{kind}"


def test_a_profile_maps_types_times_and_counts() -> None:
    profile = UserProfile(
        user_id="u1",
        recent_items=(
            RecentItem(1_700_000_000_123, "e2", "mug", "s", "purchase"),
            RecentItem(1_700_000_000_000, "e1", "tent", "s", "cancel"),
        ),
        top_categories=(ScoredCategory("kitchen", 2.0),),
        top_items=(),
        events=7,
        purchases=2,
        first_seen=1_600_000_000_000,
        last_seen=1_700_000_000_123,
    )
    message = _profile(profile)
    assert message.subject_id == "u1"
    assert [r.last_event_type for r in message.recent_items] == [
        events_pb2.EVENT_TYPE_PURCHASE,
        events_pb2.EVENT_TYPE_CANCEL,
    ]
    assert message.recent_items[0].last_seen_at.ToMilliseconds() == 1_700_000_000_123
    assert {(c.type, c.count) for c in message.event_counts} == {
        (events_pb2.EVENT_TYPE_PURCHASE, 2),
        (events_pb2.EVENT_TYPE_UNSPECIFIED, 5),
    }
    assert message.first_seen_at.ToMilliseconds() == 1_600_000_000_000


def test_an_item_round_trips_and_update_time_is_output_only() -> None:
    item = CatalogItem(
        "mug", "Blue Mug", ("home",), 9.5, True, {"brand": "acme"}, 1_700_000_000_000
    )
    message = item_to_proto(item)
    assert message.update_time.ToMilliseconds() == 1_700_000_000_000
    back = item_from_proto(message)
    assert back == CatalogItem("mug", "Blue Mug", ("home",), 9.5, True, {"brand": "acme"}, 0)
    nan = item_from_proto(catalog_service_pb2.Item(item_id="x", price=float("nan")))
    assert math.isnan(nan.price)
