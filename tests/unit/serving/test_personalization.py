"""The serving domain: limits, catalog hiding, titled reasons, cold start, filters, errors."""

from __future__ import annotations

import pytest

from magnetar.errors import InvalidArgument, NotFound, Unavailable
from magnetar.personalization import records
from magnetar.serving.personalization import (
    ItemFilter,
    PersonalizationServing,
    ProfileQuery,
    RecommendQuery,
    SimilarItemsQuery,
    TrendingQuery,
)
from magnetar.serving.reasons import ReasonKind, ServedItem
from tests.unit.personalization.builders import event
from tests.unit.serving.fakes import NOW, TENANT, FakeServingState, shop


def _serving(state: FakeServingState) -> PersonalizationServing:
    return PersonalizationServing(state, clock_ms=lambda: NOW)


def _buyer_state() -> FakeServingState:
    bought = event(records.PURCHASE, "tent", user_id="b", session_id="b1", at=NOW - 1000)
    return FakeServingState([*shop(), bought])


def _ids(items: tuple[ServedItem, ...] | list[ServedItem]) -> list[str]:
    return [item.item_id for item in items]


def _violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


def test_an_unknown_user_gets_trending_items_marked_cold_start() -> None:
    result = _serving(FakeServingState(shop())).recommend(
        TENANT, RecommendQuery(k=3, user_id="nobody")
    )
    assert _ids(result.items)[0] == "mug"
    assert len(result.items) == 3
    assert {item.reason.kind for item in result.items} == {ReasonKind.TRENDING}
    assert result.cold_start


def test_a_buyer_gets_what_was_bought_together_named_by_its_catalog_title() -> None:
    state = _buyer_state()
    state.put_item("tent", title="Dome Tent")
    # Without the tent itself, which the user's own repeat affinity would rank first.
    query = RecommendQuery(k=3, user_id="b", filter=ItemFilter(exclude_purchased=True))
    result = _serving(state).recommend(TENANT, query)
    top = result.items[0]
    assert top.item_id == "sleeping-bag"
    assert top.reason.kind is ReasonKind.CO_VISITATION
    assert top.reason.related_item_id == "tent"
    assert top.reason.text == "bought together with Dome Tent"
    assert not result.cold_start


def test_an_anonymous_id_reads_the_state_kept_under_it() -> None:
    query = RecommendQuery(k=1, anonymous_id="b", filter=ItemFilter(exclude_purchased=True))
    result = _serving(_buyer_state()).recommend(TENANT, query)
    assert _ids(result.items) == ["sleeping-bag"]
    assert not result.cold_start


def test_items_the_catalog_hides_are_left_out_and_the_next_best_fill_in() -> None:
    state = _buyer_state()
    state.put_item("sleeping-bag", visible=False)
    result = _serving(state).recommend(TENANT, RecommendQuery(k=3, user_id="b"))
    assert "sleeping-bag" not in _ids(result.items)
    assert len(result.items) == 3


def test_hidden_items_beyond_the_first_catalog_lookup_are_still_filled_in() -> None:
    state = FakeServingState(shop())
    for item_id in ("mug", "tent", "sleeping-bag"):
        state.put_item(item_id, visible=False)
    # k=1 looks the catalog up 20 candidates at a time; only lantern is left visible.
    result = _serving(state).recommend(TENANT, RecommendQuery(k=1, user_id="nobody"))
    assert _ids(result.items) == ["lantern"]


def test_a_session_only_request_is_served_from_its_context_items_as_cold_start() -> None:
    result = _serving(_buyer_state()).recommend(
        TENANT, RecommendQuery(k=2, session_id="s-9", context_item_ids=("tent",))
    )
    assert result.items[0].item_id == "sleeping-bag"
    assert result.items[0].reason.related_item_id == "tent"
    assert "tent" not in _ids(result.items)
    assert result.cold_start


def test_filters_exclude_purchases_ids_and_other_categories() -> None:
    serving = _serving(_buyer_state())
    bought = serving.recommend(
        TENANT, RecommendQuery(k=5, user_id="b", filter=ItemFilter(exclude_purchased=True))
    )
    assert "tent" not in _ids(bought.items)
    kitchen = serving.recommend(
        TENANT, RecommendQuery(k=5, user_id="b", filter=ItemFilter(categories=("kitchen",)))
    )
    assert _ids(kitchen.items) == ["mug"]
    excluded = serving.recommend(
        TENANT,
        RecommendQuery(k=5, user_id="b", filter=ItemFilter(exclude_item_ids=("sleeping-bag",))),
    )
    assert "sleeping-bag" not in _ids(excluded.items)


def test_one_read_scope_per_request_and_store_failures_pass_through() -> None:
    state = _buyer_state()
    serving = _serving(state)
    serving.recommend(TENANT, RecommendQuery(k=2, user_id="b"))
    assert state.requests == [TENANT]
    state.failure = Unavailable("down")
    with pytest.raises(Unavailable):
        serving.recommend(TENANT, RecommendQuery(k=2, user_id="b"))


@pytest.mark.parametrize("k", [0, 101])
def test_k_outside_1_to_100_is_a_field_violation_on_k(k: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _serving(FakeServingState()).recommend(TENANT, RecommendQuery(k=k, user_id="u"))
    assert list(_violations(caught)) == ["k"]


def test_every_broken_limit_is_reported_at_once() -> None:
    query = RecommendQuery(
        k=5,
        context_item_ids=tuple(f"i{n}" for n in range(21)),
        filter=ItemFilter(exclude_item_ids=("ok", "bad\x00id", "x" * 129), categories=("",)),
    )
    with pytest.raises(InvalidArgument) as caught:
        _serving(FakeServingState()).recommend(TENANT, query)
    assert _violations(caught) == {
        "user_id": "one of user_id, anonymous_id, session_id is required",
        "context_item_ids": "must hold at most 20 entries, got 21",
        "filter.exclude_item_ids[1]": "must not contain control characters",
        "filter.exclude_item_ids[2]": "must be at most 128 bytes",
        "filter.categories[0]": "is required",
    }


def test_similar_items_are_the_items_seen_with_it() -> None:
    items = _serving(FakeServingState(shop())).similar_items(
        TENANT, SimilarItemsQuery(item_id="tent", k=2)
    )
    assert set(_ids(items)) == {"sleeping-bag", "lantern"}
    assert all(i.reason.related_item_id == "tent" for i in items)


def test_similar_items_of_an_unknown_item_is_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        _serving(FakeServingState(shop())).similar_items(
            TENANT, SimilarItemsQuery(item_id="nope", k=2)
        )
    assert caught.value.reason == "ITEM_NOT_FOUND"


def test_an_item_only_the_catalog_knows_gets_what_is_popular_in_its_categories() -> None:
    state = FakeServingState(shop())
    state.put_item("stove", categories=("outdoor",))
    items = _serving(state).similar_items(TENANT, SimilarItemsQuery(item_id="stove", k=2))
    assert len(items) == 2
    assert {i.reason.kind for i in items} == {ReasonKind.CATEGORY_AFFINITY}
    assert {i.reason.category for i in items} == {"outdoor"}


def test_a_deleted_catalog_item_without_events_is_not_found() -> None:
    state = FakeServingState(shop())
    state.put_item("stove", categories=("outdoor",), visible=False)
    with pytest.raises(NotFound):
        _serving(state).similar_items(TENANT, SimilarItemsQuery(item_id="stove", k=2))


def test_similar_items_honour_the_users_purchases_and_the_catalog() -> None:
    bag = event(records.PURCHASE, "sleeping-bag", user_id="b", session_id="b2", at=NOW - 10)
    state = FakeServingState([*shop(), bag])
    serving = _serving(state)
    query = SimilarItemsQuery(
        item_id="tent", k=5, user_id="b", filter=ItemFilter(exclude_purchased=True)
    )
    assert "sleeping-bag" not in _ids(serving.similar_items(TENANT, query))
    state.put_item("lantern", visible=False)
    assert "lantern" not in _ids(serving.similar_items(TENANT, SimilarItemsQuery("tent", 5)))


def test_trending_needs_a_window_and_honours_the_category() -> None:
    serving = _serving(FakeServingState(shop()))
    with pytest.raises(InvalidArgument) as caught:
        serving.trending(TENANT, TrendingQuery(window=None, k=3))
    assert list(_violations(caught)) == ["window"]
    assert _ids(serving.trending(TENANT, TrendingQuery(window="DAY", k=1))) == ["mug"]
    outdoor = serving.trending(TENANT, TrendingQuery(window="WEEK", k=5, category="outdoor"))
    assert set(_ids(outdoor)) == {"tent", "sleeping-bag", "lantern"}


def test_a_profile_shows_recent_items_and_counts_and_an_unknown_user_is_not_found() -> None:
    serving = _serving(_buyer_state())
    profile = serving.user_profile(TENANT, ProfileQuery(user_id="b", recent_items_limit=1))
    assert [r.item_id for r in profile.recent_items] == ["tent"]
    assert (profile.events, profile.purchases) == (1, 1)
    with pytest.raises(NotFound):
        serving.user_profile(TENANT, ProfileQuery(user_id="nobody"))
    with pytest.raises(InvalidArgument) as caught:
        serving.user_profile(TENANT, ProfileQuery(recent_items_limit=101))
    assert set(_violations(caught)) == {"user_id", "recent_items_limit"}


def test_when_the_catalog_hides_every_ranked_candidate_more_are_ranked() -> None:
    popular = [
        event(records.PURCHASE, f"i{n:02d}", user_id=f"b{n}-{m}", session_id=f"s{n}-{m}")
        for n in range(30)
        for m in range(30 - n)  # i00 is the most popular, i29 the least
    ]
    state = FakeServingState(popular)
    for n in range(25):
        state.put_item(f"i{n:02d}", visible=False)
    result = _serving(state).recommend(TENANT, RecommendQuery(k=2, user_id="nobody"))
    assert _ids(result.items) == ["i25", "i26"]
