"""`magnetar.v1.PersonalizationService`: proto in, `PersonalizationServing` (the domain), proto out.

Each call first runs on the event loop from this process's memory only, with no thread hop
or I/O; what memory does not hold runs again on a worker thread, reading PostgreSQL
(docs/serving.md, "Freshness and the read path").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2

from gateway.blocking import in_thread
from gateway.interceptors import current_tenant
from magnetar.personalization.recommend import UserProfile
from magnetar.serving.memory import NotInMemory, memory_only
from magnetar.serving.personalization import (
    ItemFilter,
    PersonalizationServing,
    ProfileQuery,
    RecommendQuery,
    SimilarItemsQuery,
    TrendingQuery,
)
from magnetar.serving.reasons import ServedItem
from magnetar.v1 import events_pb2
from magnetar.v1 import personalization_service_pb2 as pb
from magnetar.v1 import personalization_service_pb2_grpc as pb_grpc

Q = TypeVar("Q")
R = TypeVar("R")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PersonalizationService"].full_name
_WINDOW_PREFIX = "TRENDING_WINDOW_"


def _filter(message: pb.RecommendationFilter) -> ItemFilter:
    return ItemFilter(
        exclude_purchased=message.exclude_purchased,
        exclude_viewed=message.exclude_viewed,
        exclude_item_ids=tuple(message.exclude_item_ids),
        categories=tuple(message.categories),
    )


def _scored(items: Sequence[ServedItem]) -> list[pb.ScoredItem]:
    return [
        pb.ScoredItem(
            item_id=item.item_id,
            score=item.score,
            reason=pb.RecommendationReason(
                kind=pb.ReasonKind.Value(f"REASON_KIND_{item.reason.kind}"),
                related_item_id=item.reason.related_item_id,
                category=item.reason.category,
                text=item.reason.text,
            ),
        )
        for item in items
    ]


def _window(value: int) -> str | None:
    """HOUR, DAY or WEEK; None for unspecified or a number this build has no name for."""
    if value == pb.TRENDING_WINDOW_UNSPECIFIED or value not in pb.TrendingWindow.values():
        return None
    return pb.TrendingWindow.Name(value).removeprefix(_WINDOW_PREFIX)  # type: ignore[arg-type]


def _timestamp(ms: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def _event_type(name: str) -> int:
    # State names types like the wire without the prefix.
    try:
        return int(events_pb2.EventType.Value(f"EVENT_TYPE_{name.upper()}"))
    except ValueError:
        return events_pb2.EVENT_TYPE_UNSPECIFIED


def _profile(profile: UserProfile) -> pb.UserProfile:
    return pb.UserProfile(
        subject_id=profile.user_id,
        recent_items=[
            pb.RecentItem(
                item_id=entry.item_id,
                last_event_type=_event_type(entry.type),  # type: ignore[arg-type]
                last_seen_at=_timestamp(entry.occurred_at),
            )
            for entry in profile.recent_items
        ],
        top_categories=[
            pb.CategoryAffinity(category=c.category, score=c.score) for c in profile.top_categories
        ],
        # The state counts purchases apart and every other type together (see the field's
        # comment in the contract): the rest is reported under EVENT_TYPE_UNSPECIFIED.
        event_counts=[
            pb.EventTypeCount(type=events_pb2.EVENT_TYPE_PURCHASE, count=profile.purchases),
            pb.EventTypeCount(
                type=events_pb2.EVENT_TYPE_UNSPECIFIED, count=profile.events - profile.purchases
            ),
        ],
        last_seen_at=_timestamp(profile.last_seen),
        first_seen_at=_timestamp(profile.first_seen),
    )


# How many missing pieces a call may fill before it runs on a worker thread as a whole.
MAX_FILLS = 3


async def _served(context: Any, call: Callable[[str, Q], R], query: Q) -> R:
    """`call(tenant, query)` from memory on the loop; what memory lacks is read on a worker
    thread (only that piece, then the call runs from memory again), up to MAX_FILLS pieces;
    past them, or for a piece with no fill, the whole call runs on a worker thread."""
    tenant = current_tenant()
    for filled in range(MAX_FILLS + 1):
        try:
            with memory_only():
                return call(tenant, query)
        except NotInMemory as missing:
            fill = missing.fill
        if fill is None or filled == MAX_FILLS:
            break
        await in_thread(context, fill)
    return await in_thread(context, call, tenant, query)


class PersonalizationService(pb_grpc.PersonalizationServiceServicer):
    def __init__(self, serving: PersonalizationServing) -> None:
        self._serving = serving

    async def Recommend(self, request: pb.RecommendRequest, context: Any) -> pb.RecommendResponse:
        query = RecommendQuery(
            k=request.k,
            user_id=request.user_id,
            anonymous_id=request.anonymous_id,
            session_id=request.session_id,
            context_item_ids=tuple(request.context_item_ids),
            filter=_filter(request.filter),
        )
        result = await _served(context, self._serving.recommend, query)
        return pb.RecommendResponse(items=_scored(result.items), cold_start=result.cold_start)

    async def SimilarItems(
        self, request: pb.SimilarItemsRequest, context: Any
    ) -> pb.SimilarItemsResponse:
        query = SimilarItemsQuery(
            item_id=request.item_id,
            k=request.k,
            filter=_filter(request.filter),
            user_id=request.user_id,
        )
        items = await _served(context, self._serving.similar_items, query)
        return pb.SimilarItemsResponse(items=_scored(items))

    async def Trending(self, request: pb.TrendingRequest, context: Any) -> pb.TrendingResponse:
        query = TrendingQuery(
            window=_window(request.window), k=request.k, category=request.category
        )
        items = await _served(context, self._serving.trending, query)
        return pb.TrendingResponse(items=_scored(items))

    async def GetUserProfile(
        self, request: pb.GetUserProfileRequest, context: Any
    ) -> pb.GetUserProfileResponse:
        query = ProfileQuery(
            user_id=request.user_id,
            anonymous_id=request.anonymous_id,
            recent_items_limit=request.recent_items_limit,
        )
        profile = await _served(context, self._serving.user_profile, query)
        return pb.GetUserProfileResponse(profile=_profile(profile))
