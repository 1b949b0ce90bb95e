from __future__ import annotations

import itertools
from collections import Counter

from magnetar.personalization import records
from magnetar.workload.generator import GeneratorSettings, generate

SMALL = GeneratorSettings(users=200, items=300, categories=6)


def test_the_same_seed_gives_the_same_events_ids_included() -> None:
    assert list(generate(SMALL, seed=7, max_events=500)) == list(
        generate(SMALL, seed=7, max_events=500)
    )


def test_different_seeds_give_different_events() -> None:
    first = [e.event_id for e in generate(SMALL, seed=1, max_events=50)]
    second = [e.event_id for e in generate(SMALL, seed=2, max_events=50)]
    assert first != second


def test_max_events_bounds_the_stream() -> None:
    assert len(list(generate(SMALL, seed=3, max_events=123))) == 123


def test_item_popularity_is_skewed_like_zipf() -> None:
    views = Counter(
        e.item_id for e in generate(SMALL, seed=4, max_events=20_000) if e.type == records.VIEW
    )
    top_ten = sum(count for _, count in views.most_common(10))
    # Under a uniform law the 10 top items of 300 would get about 3 % of the views.
    assert top_ten / sum(views.values()) > 0.25


def test_a_share_of_events_is_delivered_twice_with_the_same_id() -> None:
    settings = GeneratorSettings(users=200, items=300, categories=6, duplicate_share=0.1)
    ids = Counter(e.event_id for e in generate(settings, seed=5, max_events=5_000))
    repeated = sum(1 for count in ids.values() if count > 1)
    assert 0.05 < repeated / len(ids) < 0.15


def test_no_duplicates_and_no_late_events_when_both_shares_are_zero() -> None:
    settings = GeneratorSettings(
        users=200, items=300, categories=6, duplicate_share=0.0, late_share=0.0
    )
    events = list(generate(settings, seed=6, max_events=3_000))
    assert len({e.event_id for e in events}) == len(events)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)


def test_late_events_arrive_after_events_that_happened_later() -> None:
    settings = GeneratorSettings(users=200, items=300, categories=6, late_share=0.2)
    events = list(generate(settings, seed=8, max_events=3_000))
    overtaken = sum(1 for a, b in itertools.pairwise(events) if b.occurred_at < a.occurred_at)
    assert overtaken > 100


def test_users_browse_mostly_their_favourite_categories() -> None:
    settings = GeneratorSettings(
        users=50, items=500, categories=10, anonymous_share=0.0, category_loyalty=0.9
    )
    by_user: dict[str, Counter[str]] = {}
    for e in generate(settings, seed=9, max_events=20_000):
        if e.type == records.VIEW:
            by_user.setdefault(e.user_id, Counter()).update(e.categories[:1])
    busy = [counts for counts in by_user.values() if sum(counts.values()) >= 50]
    top_three = [sum(c for _, c in counts.most_common(3)) / sum(counts.values()) for counts in busy]
    assert busy and min(top_three) > 0.6


def test_returning_customers_buy_the_same_item_again() -> None:
    purchases = Counter(
        (e.user_id, e.item_id)
        for e in generate(SMALL, seed=10, max_events=30_000)
        if e.type == records.PURCHASE
    )
    assert any(count > 1 for count in purchases.values())


def test_sessions_hold_several_events_and_the_funnel_narrows() -> None:
    events = list(generate(SMALL, seed=11, max_events=10_000))
    types = Counter(e.type for e in events)
    assert types[records.VIEW] > types[records.CLICK] > types[records.ADD_TO_CART]
    assert types[records.ADD_TO_CART] > types[records.PURCHASE] > 0
    assert len({e.session_id for e in events}) < len(events) / 3
