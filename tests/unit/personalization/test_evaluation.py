from __future__ import annotations

import pytest

from magnetar.personalization import records
from magnetar.personalization.decay import DAY_MS
from magnetar.personalization.evaluation import (
    BASELINE,
    CandidateReport,
    HitRates,
    MethodResult,
    Split,
    blended,
    choose,
    evaluate_candidate,
    held_out_baskets,
    hit_rates,
    lift,
    most_popular,
    replay,
    tune_blend,
)
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import BlendWeights, TenantPersonalization
from tests.unit.personalization.builders import T0, event

VALIDATION = Split("validation", T0 + 10 * DAY_MS, T0 + 20 * DAY_MS)
TEST = Split("test", T0 + 20 * DAY_MS, T0 + 30 * DAY_MS)


def _known(user_id: str) -> bool:
    return not user_id.startswith("anon")


def _basket(user: str, invoice: str, day: int, *items: str) -> list[EnrichedEvent]:
    return [
        event(records.PURCHASE, item, user_id=user, session_id=invoice, at=T0 + day * DAY_MS)
        for item in items
    ]


def _ordered(events: list[EnrichedEvent]) -> list[EnrichedEvent]:
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def test_each_split_holds_out_the_last_invoice_before_its_end() -> None:
    events = _ordered(
        _basket("ann", "a1", 1, "x")
        + _basket("ann", "a2", 15, "y")
        + _basket("ann", "a3", 25, "z")
        + _basket("bob", "b1", 2, "x")
        + _basket("bob", "b2", 12, "y", "w")
    )
    baskets, _ = held_out_baskets(events, [VALIDATION, TEST], _known)
    found = {(b.split, b.user_id): (b.session_id, b.items) for b in baskets}
    assert found == {
        ("validation", "ann"): ("a2", frozenset({"y"})),
        ("validation", "bob"): ("b2", frozenset({"y", "w"})),
        ("test", "ann"): ("a3", frozenset({"z"})),
    }


def test_first_time_and_anonymous_customers_are_not_asked() -> None:
    events = _ordered(_basket("new", "n1", 22, "x") + _basket("anon-1", "z1", 23, "x"))
    baskets, left_out = held_out_baskets(events, [TEST], _known)
    assert baskets == []
    assert left_out == {"test: first-time customer": 1}


def test_the_state_asked_never_contains_the_held_out_basket() -> None:
    events = _ordered(
        _basket("ann", "a1", 1, "old")
        + _basket("ann", "a2", 25, "brand-new")
        + _basket("bob", "b1", 26, "brand-new")
    )
    baskets, _ = held_out_baskets(events, [TEST], _known)
    (query,) = replay(events, baskets, TenantPersonalization(), "acme")
    assert query.most_popular == ("old",)
    candidates = {item for s in query.pool.strategies.values() for item in s.scores}
    assert "brand-new" not in candidates


def _repeat_buyers() -> list[EnrichedEvent]:
    """Every customer re-buys their own item; a best-seller nobody re-buys dominates counts."""
    events: list[EnrichedEvent] = []
    for n in range(8):
        events += _basket(f"c{n}", f"c{n}-1", 1 + n % 5, f"own{n}")
        events += _basket(f"c{n}", f"c{n}-2", 21 + n % 5, f"own{n}")
    for n in range(30):
        events += _basket(f"fan{n}", f"f{n}", 1 + n % 15, *(f"hit{h}" for h in range(25)))
    return _ordered(events)


def test_repeat_buyers_are_hit_by_personal_strategies_and_missed_by_most_popular() -> None:
    events = _repeat_buyers()
    baskets, _ = held_out_baskets(events, [TEST], _known)
    queries = replay(events, baskets, TenantPersonalization(), "acme", batch_size=7)
    assert hit_rates(queries, most_popular).rate(20) == 0.0
    weights, rates = tune_blend(queries)
    assert rates.rate(10) == rates.rate(20) == 1.0
    assert weights.repeat > 0


def test_the_batch_size_of_the_replay_does_not_change_what_is_asked() -> None:
    events = _repeat_buyers()
    baskets, _ = held_out_baskets(events, [TEST], _known)
    small = replay(events, baskets, TenantPersonalization(), "acme", batch_size=3)
    large = replay(events, baskets, TenantPersonalization(), "acme", batch_size=10_000)
    weights = BlendWeights()
    assert [blended(weights)(q) for q in small] == [blended(weights)(q) for q in large]


def test_lift_is_relative_to_the_baseline() -> None:
    assert lift(0.6, 0.5) == pytest.approx(0.2)
    assert lift(0.3, 0.0) is None


def test_the_configuration_is_chosen_on_validation_results_only() -> None:
    def report(validation_hits: int, test_hits: int) -> CandidateReport:
        test_rates = HitRates(10, {10: test_hits, 20: test_hits})
        return CandidateReport(
            TenantPersonalization(),
            BlendWeights(),
            HitRates(10, {10: validation_hits, 20: validation_hits}),
            (MethodResult("test", "magnetar", test_rates, {10: None, 20: None}),),
        )

    better_on_validation, better_on_test = report(6, 2), report(5, 9)
    assert choose([better_on_test, better_on_validation]) is better_on_validation


def test_a_candidate_report_compares_every_method_with_the_baseline_on_each_split() -> None:
    events = _repeat_buyers()
    splits = (Split("validation", T0, T0 + 20 * DAY_MS), TEST)
    baskets, _ = held_out_baskets(events, splits, _known)
    result = evaluate_candidate(events, baskets, splits, TenantPersonalization(), "acme")
    by_method = {(r.split, r.method): r for r in result.results}
    baseline = by_method[("test", BASELINE)]
    assert baseline.rates.rate(20) == 0.0
    assert baseline.lift[20] is None  # no lift can be stated over a baseline of zero
    assert by_method[("test", "repeat only")].rates.rate(20) == 1.0
    assert {split for split, _ in by_method} == {"validation", "test"}
