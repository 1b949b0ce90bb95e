"""The cutoff protocol: who is asked, what counts as a hit, the baseline, and the offline
twin served at the tenant's clock."""

from __future__ import annotations

from magnetar.personalization import records
from magnetar.personalization.cutoff_eval import (
    CutoffQuery,
    clock_at,
    cutoff_queries,
    from_lists,
    hit_rates,
    most_popular_before,
    offline_rankings,
    state_of,
)
from magnetar.personalization.decay import DAY_MS, HOUR_MS
from magnetar.personalization.settings import TenantPersonalization
from tests.unit.personalization.builders import T0, event

CUT = T0 + 10 * DAY_MS


def _customer(user_id: str) -> bool:
    return not user_id.startswith("anon-")


def _buy(item: str, user: str, invoice: str, at: int) -> records.EnrichedEvent:
    return event(records.PURCHASE, item, user_id=user, session_id=invoice, at=at)


def test_only_customers_who_bought_before_and_from_the_cutoff_are_asked_for_the_first_invoice() -> (
    None
):
    events = [
        _buy("tent", "ann", "i1", T0),
        _buy("mug", "ann", "i2", CUT + HOUR_MS),  # first invoice from the cutoff
        _buy("lamp", "ann", "i2", CUT + HOUR_MS),
        _buy("rope", "ann", "i3", CUT + 2 * HOUR_MS),  # a later one: not held out
        _buy("tent", "bob", "i4", T0),  # never came back
        _buy("mug", "cy", "i5", CUT),  # first-time customer at the cutoff
        _buy("tent", "anon-i6", "i6", T0),
        _buy("mug", "anon-i6", "i7", CUT),  # anonymous: no customer to ask
        event(records.VIEW, "mug", user_id="dee", at=T0),  # only viewed before
        _buy("mug", "dee", "i8", CUT),
    ]
    assert cutoff_queries(events, CUT, _customer) == [
        CutoffQuery("ann", frozenset({"mug", "lamp"}))
    ]


def test_a_hit_is_any_held_out_item_in_the_top_k() -> None:
    queries = [CutoffQuery("ann", frozenset({"mug"})), CutoffQuery("bob", frozenset({"rope"}))]
    lists = {"ann": ["tent", "mug"], "bob": ["a", "b", "rope"]}
    rates = hit_rates(queries, from_lists(lists), (1, 2, 3))
    assert rates.hits == {1: 0, 2: 1, 3: 2}
    assert rates.rate(2) == 0.5


def test_the_baseline_counts_purchases_before_the_cutoff_only() -> None:
    events = [
        _buy("mug", "a", "1", T0),
        _buy("mug", "b", "2", T0),
        _buy("tent", "c", "3", T0),
        _buy("lamp", "d", "4", T0),
        _buy("lamp", "e", "5", CUT),
        _buy("lamp", "f", "6", CUT),
        event(records.VIEW, "rope", user_id="g", at=T0),
    ]
    assert most_popular_before(events, CUT, 3) == ["mug", "lamp", "tent"]


def test_the_offline_twin_asks_at_the_newest_event_before_the_cutoff() -> None:
    # The buyer of the tent gets the lantern bought with it.
    settings = TenantPersonalization()
    before = [
        _buy("tent", "ann", "i1", T0),
        _buy("tent", "bob", "i2", T0 + HOUR_MS),
        _buy("lantern", "bob", "i2", T0 + HOUR_MS),
    ]
    assert clock_at(before) == T0 + HOUR_MS
    state = state_of(before, settings)
    query = CutoffQuery("ann", frozenset({"lantern"}))
    ranked = offline_rankings(state, [query], settings, "acme", clock_at(before), 5)
    assert "lantern" in ranked["ann"]
