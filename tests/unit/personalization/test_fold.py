from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magnetar.personalization import records
from magnetar.personalization.decay import HOUR_MS, MINUTE_MS
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import (
    ItemKey,
    ItemPairKey,
    StateDelta,
    UserCategoryKey,
    UserItemKey,
    UserKey,
)
from tests.unit.personalization.builders import T0, event

SETTINGS = SignalSettings()


def _affinity(delta: StateDelta, item: str, user: str = "u1") -> float:
    return delta.user_items[UserItemKey("acme", user, item)].score.at(T0, 1)


def test_affinity_grows_along_the_funnel() -> None:
    delta = fold_events(
        [
            event(records.VIEW, "viewed"),
            event(records.CLICK, "clicked"),
            event(records.ADD_TO_CART, "carted"),
            event(records.PURCHASE, "bought"),
        ],
        SETTINGS,
    )
    scores = [_affinity(delta, i) for i in ("viewed", "clicked", "carted", "bought")]
    assert scores == sorted(scores)
    assert len(set(scores)) == 4


def test_a_cancellation_takes_back_the_purchase() -> None:
    delta = fold_events(
        [event(records.PURCHASE, "x", at=T0), event(records.CANCEL, "x", at=T0)], SETTINGS
    )
    signal = delta.user_items[UserItemKey("acme", "u1", "x")]
    assert signal.purchases == 0
    assert signal.score.value == pytest.approx(0.0)


def test_negative_events_create_no_pairs_no_popularity_and_no_recent_items() -> None:
    delta = fold_events(
        [
            event(records.VIEW, "a", at=T0),
            event(records.REMOVE_FROM_CART, "b", at=T0 + 1),
            event(records.CANCEL, "c", at=T0 + 2),
        ],
        SETTINGS,
    )
    assert delta.covisitation == {}
    assert {key.item_id for key in delta.item_popularity} == {"a"}
    assert [entry.item_id for entry in delta.recent_items[UserKey("acme", "u1")]] == ["a"]
    assert _affinity(delta, "b") < 0


def test_types_without_a_weight_only_count_as_activity() -> None:
    delta = fold_events([event("impression", "a")], SETTINGS)
    assert delta.user_activity[UserKey("acme", "u1")].events == 1
    assert delta.user_items == {}
    assert delta.item_popularity == {}
    assert ItemKey("acme", "a") in delta.item_categories


def test_an_event_about_no_item_only_counts_as_activity() -> None:
    delta = fold_events([event("search", ""), event(records.VIEW, "")], SETTINGS)
    assert delta.user_activity[UserKey("acme", "u1")].events == 2
    assert delta.item_categories == {}
    assert delta.user_items == {}
    assert delta.recent_items == {}


def test_a_repeated_event_id_counts_once() -> None:
    once = fold_events([event(records.PURCHASE, "a", event_id="e1")], SETTINGS)
    twice = fold_events(
        [event(records.PURCHASE, "a", event_id="e1"), event(records.PURCHASE, "a", event_id="e1")],
        SETTINGS,
    )
    assert twice == once
    assert twice.event_ids == frozenset({("acme", "e1")})


def test_items_pair_only_within_their_session() -> None:
    delta = fold_events(
        [
            event(records.VIEW, "a", session_id="s1", at=T0),
            event(records.VIEW, "b", session_id="s1", at=T0 + 1),
            event(records.VIEW, "c", session_id="s2", at=T0 + 2),
        ],
        SETTINGS,
    )
    assert set(delta.covisitation) == {
        ItemPairKey("acme", "a", "b"),
        ItemPairKey("acme", "b", "a"),
    }


def test_an_event_pairs_with_at_most_pair_window_earlier_items() -> None:
    window = 3
    basket = [event(records.PURCHASE, f"i{n}", at=T0 + n) for n in range(10)]
    delta = fold_events(basket, SignalSettings(pair_window=window))
    partners_of_last = {k.other_item_id for k in delta.covisitation if k.item_id == "i9"}
    assert partners_of_last == {"i6", "i7", "i8"}
    # Each event adds at most `window` partners in both directions.
    assert len(delta.covisitation) <= 2 * window * len(basket)


def test_bought_together_pairs_weigh_more_than_viewed_together() -> None:
    delta = fold_events(
        [
            event(records.PURCHASE, "a", session_id="s1", at=T0),
            event(records.PURCHASE, "b", session_id="s1", at=T0 + 1),
            event(records.VIEW, "a", session_id="s2", at=T0),
            event(records.VIEW, "c", session_id="s2", at=T0 + 1),
        ],
        SETTINGS,
    )
    bought = delta.covisitation[ItemPairKey("acme", "a", "b")].value
    viewed = delta.covisitation[ItemPairKey("acme", "a", "c")].value
    assert bought > viewed


def test_recent_items_keep_one_entry_per_session_item_newest_first_bounded() -> None:
    events = [event(records.VIEW, f"i{n % 4}", at=T0 + n) for n in range(10)]
    delta = fold_events(events, SignalSettings(recent_items_limit=3))
    recent = delta.recent_items[UserKey("acme", "u1")]
    assert [entry.item_id for entry in recent] == ["i1", "i0", "i3"]


def test_an_observation_without_categories_does_not_erase_known_ones() -> None:
    delta = fold_events(
        [
            event(records.VIEW, "a", at=T0, categories=("shoes",)),
            event(records.VIEW, "a", at=T0 + 1),
        ],
        SETTINGS,
    )
    assert delta.item_categories[ItemKey("acme", "a")].categories == ("shoes",)


def test_category_affinity_follows_the_events_categories() -> None:
    delta = fold_events([event(records.PURCHASE, "a", categories=("shoes", "sale"))], SETTINGS)
    assert {key.category for key in delta.user_categories} == {"shoes", "sale"}
    assert delta.user_categories[UserCategoryKey("acme", "u1", "shoes")].value == 8.0


def test_event_times_from_the_future_are_clamped() -> None:
    delta = fold_events(
        [event(records.VIEW, "a", at=T0 + 1000 * HOUR_MS)], SETTINGS, not_after_ms=T0
    )
    assert delta.user_items[UserItemKey("acme", "u1", "a")].score.as_of == T0


# -- properties over random sessions ------------------------------------------------------

_TYPES = st.sampled_from(
    [records.VIEW, records.CLICK, records.ADD_TO_CART, records.PURCHASE, records.CANCEL]
)


@st.composite
def _batches(draw: st.DrawFn) -> list[EnrichedEvent]:
    count = draw(st.integers(min_value=1, max_value=25))
    events = []
    for n in range(count):
        events.append(
            event(
                draw(_TYPES),
                f"i{draw(st.integers(0, 6))}",
                user_id=f"u{draw(st.integers(0, 2))}",
                session_id=f"s{draw(st.integers(0, 1))}",
                at=T0 + draw(st.integers(0, 120)) * MINUTE_MS,
                categories=draw(st.sampled_from([(), ("c1",), ("c1", "c2")])),
                event_id=f"e{n:03d}",
            )
        )
    return events


def _snapshot(state: MemoryState, now: int) -> dict[str, object]:
    """Everything observable through the read port, rounded against float noise."""
    users = ["u0", "u1", "u2"]
    items = [f"i{n}" for n in range(7)]

    def rounded(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
        return sorted((key, round(value, 6)) for key, value in pairs)

    return {
        "affinities": {u: rounded(state.user_item_affinities("acme", u, now, 50)) for u in users},
        "categories": {
            u: rounded(state.user_category_affinities("acme", u, now, 50)) for u in users
        },
        "purchased": {u: state.purchased_items("acme", u) for u in users},
        "activity": {u: state.user_activity("acme", u) for u in users},
        "recent": {u: tuple(state.recent_items("acme", u, 50)) for u in users},
        "neighbours": {
            i: rounded(found) for i, found in state.neighbours("acme", items, now, 50).items()
        },
        "trending": rounded(state.trending("acme", "24h", now, 50)),
        "item_categories": state.item_categories("acme", items),
    }


@settings(max_examples=60, deadline=None)
@given(_batches(), st.randoms(use_true_random=False))
def test_any_arrival_order_folds_to_the_same_delta(
    events: list[EnrichedEvent], shuffler: random.Random
) -> None:
    shuffled = list(events)
    shuffler.shuffle(shuffled)
    assert fold_events(shuffled, SETTINGS) == fold_events(events, SETTINGS)


@settings(max_examples=60, deadline=None)
@given(_batches(), st.integers(min_value=1, max_value=24))
def test_two_batches_in_time_order_give_the_same_state_as_one(
    events: list[EnrichedEvent], cut: int
) -> None:
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    cut = min(cut, len(ordered))
    first, second = ordered[:cut], ordered[cut:]

    whole = MemoryState(SETTINGS)
    whole.apply(fold_events(ordered, SETTINGS))

    split = MemoryState(SETTINGS)
    split.apply(fold_events(first, SETTINGS))
    users = sorted({UserKey(e.tenant_id, e.user_id) for e in second})
    split.apply(fold_events(second, SETTINGS, split.recent_for(users)))

    now = T0 + 3 * HOUR_MS
    assert _snapshot(split, now) == _snapshot(whole, now)
