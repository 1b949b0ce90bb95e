from __future__ import annotations

import pytest

from magnetar.personalization import records
from magnetar.personalization.decay import MINUTE_MS
from magnetar.personalization.errors import InvalidRequest, UnknownItem, UnknownWindow
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.recommend import (
    COVISITATION,
    REPEAT,
    TRENDING,
    Recommendation,
    RecommendRequest,
    recommend,
    similar_items,
    trending,
    user_profile,
)
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import BlendWeights, RecommendSettings, TenantPersonalization
from tests.unit.personalization.builders import T0, event

SETTINGS = TenantPersonalization()
NOW = T0 + 60 * MINUTE_MS


def _shop() -> list[EnrichedEvent]:
    """A small shop: tents sell with sleeping bags, mugs are the best-seller."""
    events = []
    for n in range(6):
        session = f"camp{n}"
        events += [
            event(
                records.PURCHASE,
                "tent",
                user_id=f"c{n}",
                session_id=session,
                at=T0 + n,
                categories=("outdoor",),
            ),
            event(
                records.PURCHASE,
                "sleeping-bag",
                user_id=f"c{n}",
                session_id=session,
                at=T0 + n + 1,
                categories=("outdoor",),
            ),
        ]
    for n in range(10):
        events.append(
            event(
                records.PURCHASE,
                "mug",
                user_id=f"m{n}",
                session_id=f"mug{n}",
                at=T0 + 100 + n,
                categories=("kitchen",),
            )
        )
    events.append(
        event(
            records.VIEW,
            "kettle",
            user_id="m0",
            session_id="later-visit",
            at=T0 + 200,
            categories=("kitchen",),
        )
    )
    return events


def _state(extra: list[EnrichedEvent] | None = None) -> MemoryState:
    state = MemoryState(SETTINGS.signals)
    state.apply(fold_events(_shop() + (extra or []), SETTINGS.signals))
    return state


def _ids(results: list[Recommendation]) -> list[str]:
    return [r.item_id for r in results]


def test_an_unknown_user_gets_trending_never_an_error() -> None:
    results = recommend(_state(), RecommendRequest("acme", "nobody", k=3), SETTINGS, NOW)
    assert _ids(results)[0] == "mug"
    assert {r.reason for r in results} == {"trending"}
    assert all(r.strategy == TRENDING for r in results)


def test_a_request_without_any_user_gets_trending() -> None:
    results = recommend(_state(), RecommendRequest("acme", None, k=2), SETTINGS, NOW)
    assert len(results) == 2


def test_an_unknown_tenant_gets_an_empty_list() -> None:
    assert recommend(_state(), RecommendRequest("globex", "u", k=5), SETTINGS, NOW) == []


def test_a_cold_user_with_a_context_item_gets_what_goes_with_it() -> None:
    request = RecommendRequest("acme", "nobody", k=3, context_item_ids=("tent",))
    results = recommend(_state(), request, SETTINGS, NOW)
    assert results[0].item_id == "sleeping-bag"
    assert results[0].reason == "viewed with tent"
    assert "tent" not in _ids(results)


def test_a_buyer_gets_what_was_bought_together_with_their_purchase() -> None:
    state = _state([event(records.PURCHASE, "tent", user_id="new", session_id="n1", at=NOW)])
    only_covisitation = TenantPersonalization(
        recommend=RecommendSettings(blend=BlendWeights(1.0, 0.0, 0.0, 0.0))
    )
    results = recommend(state, RecommendRequest("acme", "new", k=1), only_covisitation, NOW)
    assert results[0].item_id == "sleeping-bag"
    assert results[0].reason == "bought together with tent"
    assert results[0].strategy == COVISITATION


def test_a_regular_gets_their_own_favourite_back_with_a_reason() -> None:
    state = _state([event(records.PURCHASE, "kettle", user_id="m0", session_id="x", at=NOW)])
    only_repeat = TenantPersonalization(
        recommend=RecommendSettings(blend=BlendWeights(0.0, 1.0, 0.0, 0.0))
    )
    results = recommend(state, RecommendRequest("acme", "m0", k=2), only_repeat, NOW)
    assert _ids(results) == ["kettle", "mug"]
    assert results[0].reason == "you bought this before"
    assert results[0].strategy == REPEAT


def test_category_affinity_recommends_what_is_popular_in_the_users_category() -> None:
    state = _state(
        [
            event(
                records.VIEW,
                "lantern",
                user_id="hiker",
                session_id="h",
                at=NOW,
                categories=("outdoor",),
            )
        ]
    )
    only_category = TenantPersonalization(
        recommend=RecommendSettings(blend=BlendWeights(0.0, 0.0, 1.0, 0.0))
    )
    results = recommend(state, RecommendRequest("acme", "hiker", k=2), only_category, NOW)
    assert set(_ids(results)) == {"tent", "sleeping-bag"}
    assert {r.reason for r in results} == {"popular in outdoor"}


def test_exclude_purchased_removes_what_the_user_bought() -> None:
    request = RecommendRequest("acme", "c0", k=5, exclude_purchased=True)
    results = recommend(_state(), request, SETTINGS, NOW)
    assert not {"tent", "sleeping-bag"} & set(_ids(results))
    assert "mug" in _ids(results)


def test_excluded_ids_never_come_back() -> None:
    request = RecommendRequest("acme", "nobody", k=5, exclude_item_ids=frozenset({"mug"}))
    assert "mug" not in _ids(recommend(_state(), request, SETTINGS, NOW))


def test_a_category_restriction_returns_only_items_of_those_categories() -> None:
    request = RecommendRequest("acme", "m0", k=5, categories=("outdoor",))
    results = recommend(_state(), request, SETTINGS, NOW)
    assert set(_ids(results)) == {"tent", "sleeping-bag"}


def test_results_are_best_first_and_at_most_k() -> None:
    results = recommend(_state(), RecommendRequest("acme", "c0", k=2), SETTINGS, NOW)
    assert len(results) == 2
    assert results[0].score >= results[1].score


@pytest.mark.parametrize("k", [0, -1, 101])
def test_k_out_of_range_is_an_invalid_request(k: int) -> None:
    with pytest.raises(InvalidRequest):
        recommend(_state(), RecommendRequest("acme", "c0", k=k), SETTINGS, NOW)


def test_similar_items_of_an_unknown_item_is_an_error() -> None:
    with pytest.raises(UnknownItem):
        similar_items(_state(), "acme", "nope", 5, SETTINGS, NOW)


def test_similar_items_fill_up_with_popular_items_of_the_same_category() -> None:
    results = similar_items(_state(), "acme", "kettle", 2, SETTINGS, NOW)
    assert _ids(results) == ["mug"]
    assert results[0].reason == "popular in kitchen"
    results = similar_items(_state(), "acme", "tent", 5, SETTINGS, NOW)
    assert _ids(results) == ["sleeping-bag"]


def test_trending_within_a_category() -> None:
    results = trending(_state(), "acme", "24h", "outdoor", 5, SETTINGS, NOW)
    assert set(_ids(results)) == {"tent", "sleeping-bag"}
    assert results[0].reason == "trending in outdoor"


def test_trending_in_an_unknown_window_is_an_invalid_request() -> None:
    with pytest.raises(UnknownWindow):
        trending(_state(), "acme", "3 weeks", None, 5, SETTINGS, NOW)


def test_the_profile_of_an_unknown_user_is_none() -> None:
    assert user_profile(_state(), "acme", "nobody", NOW) is None


def test_the_profile_counts_events_and_lists_recent_items_and_categories() -> None:
    profile = user_profile(_state(), "acme", "m0", NOW)
    assert profile is not None
    assert (profile.events, profile.purchases) == (2, 1)
    assert [r.item_id for r in profile.recent_items] == ["kettle", "mug"]
    assert [c.category for c in profile.top_categories] == ["kitchen"]
    assert profile.last_seen == T0 + 200
