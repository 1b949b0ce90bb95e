"""Rankings made ahead: the same answer as ranking per request, dropped when what made them
changes, never shared across tenants."""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import replace

from magnetar.db.change_stream import Change
from magnetar.personalization import records
from magnetar.personalization.fold import fold_events
from magnetar.serving.memory import ServingMemory
from magnetar.serving.personalization import (
    ItemFilter,
    PersonalizationServing,
    Recommendations,
    RecommendQuery,
)
from magnetar.serving.ranked_ahead import RankedAhead
from magnetar.serving.shared_reads import SharedReadsCache
from magnetar.workload.generator import GeneratorSettings, generate
from tests.unit.personalization.builders import event
from tests.unit.serving.fakes import NOW, TENANT, FakeServingState, shop

GENERATED = GeneratorSettings(tenant_id=TENANT, users=150, items=300, categories=8)


def _later(key: Hashable, job: object) -> None:
    """Refreshes are not run unless a test runs them."""


class _Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def _pair(
    state: FakeServingState,
) -> tuple[PersonalizationServing, PersonalizationServing, ServingMemory, _Clock]:
    """A serving that ranks every request, and one that ranks ahead, over the same state."""
    memory = ServingMemory()
    memory.set_live(True)
    shared = SharedReadsCache(state, refresh=_later)
    clock = _Clock()
    ahead = RankedAhead(memory, shared, clock_ms=clock)
    per_request = PersonalizationServing(state, clock_ms=lambda: NOW)
    ranked = PersonalizationServing(shared, clock_ms=lambda: NOW, ranked_ahead=ahead)
    return per_request, ranked, memory, clock


def _generated_state() -> tuple[FakeServingState, list[str], list[str]]:
    events = list(generate(GENERATED, seed=7, max_events=6_000))
    # The generator's clock starts at its own epoch; the requests run an hour after it ends.
    shift = NOW - 3_600_000 - max(e.occurred_at for e in events)
    shifted = [replace(e, occurred_at=e.occurred_at + shift) for e in events]
    state = FakeServingState()
    state.apply(fold_events(shifted, state.signals(TENANT)))
    items = sorted({e.item_id for e in shifted})
    for n, item_id in enumerate(items):
        # Every 9th item hidden by the catalog, titles for most, some items unknown to it.
        if n % 5 != 4:
            state.put_item(item_id, title=f"Item {n}", visible=n % 9 != 0)
    users = sorted({e.user_id for e in shifted if e.user_id})
    return state, users, items


def _random_query(rng: random.Random, user: str, items: list[str]) -> RecommendQuery:
    return RecommendQuery(
        k=rng.choice([1, 5, 10, 10, 20, 50, 100]),
        user_id=user,
        context_item_ids=tuple(rng.sample(items, rng.choice([0, 0, 0, 1, 3]))),
        filter=ItemFilter(
            exclude_purchased=rng.random() < 0.4,
            exclude_viewed=rng.random() < 0.3,
            exclude_item_ids=tuple(rng.sample(items[:40], rng.choice([0, 0, 2, 15]))),
            categories=tuple(rng.sample(["c00", "c01", "c03"], rng.choice([0, 0, 0, 1]))),
        ),
    )


def test_a_ranking_made_ahead_answers_as_ranking_per_request() -> None:
    state, users, items = _generated_state()
    per_request, ranked, memory, _ = _pair(state)
    rng = random.Random(3)
    subjects = [*rng.sample(users, 60), "nobody-known", "another-stranger"]
    for _ in range(600):
        query = _random_query(rng, rng.choice(subjects), items)
        expected = per_request.recommend(TENANT, query)
        assert ranked.recommend(TENANT, query) == expected, query
    # The comparison ran through rankings kept ahead, not only per request.
    assert memory.stats.ranked_hits > 200
    assert memory.stats.ranked_misses >= len(subjects)


def test_a_change_of_the_user_drops_their_ranking() -> None:
    state = FakeServingState(shop())
    per_request, ranked, memory, _ = _pair(state)
    query = RecommendQuery(k=5, user_id="c0", filter=ItemFilter(exclude_purchased=True))
    before = ranked.recommend(TENANT, query)
    bought = event(records.PURCHASE, "mug", user_id="c0", session_id="z", at=NOW - 10)
    state.apply(fold_events([bought], state.signals(TENANT)))
    # Not told yet: the ranking made before is what a request gets.
    assert ranked.recommend(TENANT, query) == before
    memory.invalidate(Change(TENANT, users=("c0",)))
    after = ranked.recommend(TENANT, query)
    assert after == per_request.recommend(TENANT, query)
    assert "mug" in [i.item_id for i in before.items]
    assert "mug" not in [i.item_id for i in after.items]


def test_a_ranking_is_remade_after_max_age_which_schedules_the_lists_refresh() -> None:
    state = FakeServingState(shop())
    refreshes: list[Hashable] = []
    memory = ServingMemory()
    memory.set_live(True)
    clock = _Clock()
    shared = SharedReadsCache(state, refresh=lambda key, job: refreshes.append(key), clock_ms=clock)
    ahead = RankedAhead(memory, shared, max_age_ms=30_000, clock_ms=clock)
    serving = PersonalizationServing(shared, clock_ms=lambda: NOW, ranked_ahead=ahead)
    query = RecommendQuery(k=3, user_id="c1")
    serving.recommend(TENANT, query)
    clock.ms += 30_000
    serving.recommend(TENANT, query)
    assert (memory.stats.ranked_hits, memory.stats.ranked_misses) == (1, 1)
    assert not refreshes
    clock.ms += 1  # past max_age_ms, and the trending list past its TTL
    serving.recommend(TENANT, query)
    assert (memory.stats.ranked_hits, memory.stats.ranked_misses) == (1, 2)
    assert ("trending", TENANT, "7d", 100) in refreshes


def test_a_ranking_made_from_an_empty_shared_list_is_not_kept() -> None:
    state = FakeServingState()  # a new tenant: no trending list yet
    per_request, ranked, memory, _ = _pair(state)
    query = RecommendQuery(k=3, user_id="first-visitor")
    assert not ranked.recommend(TENANT, query).items
    # Its first event: every user sees the item at once, not after the ranking's age.
    state.apply(fold_events([event(records.VIEW, "kettle", user_id="x")], state.signals(TENANT)))
    assert [i.item_id for i in ranked.recommend(TENANT, query).items] == ["kettle"]
    assert memory.stats.ranked_hits == 0
    assert ranked.recommend(TENANT, query) == per_request.recommend(TENANT, query)


def test_a_ranking_of_one_tenant_never_answers_another() -> None:
    ours = FakeServingState(shop())
    per_request, ranked, _, _ = _pair(ours)
    query = RecommendQuery(k=5, user_id="c0")
    warm: Recommendations = ranked.recommend(TENANT, query)
    assert warm.items and not warm.cold_start
    other = ranked.recommend("other-tenant", query)
    assert other == per_request.recommend("other-tenant", query)
    assert other.cold_start and not other.items
