"""Offline next-basket evaluation: replay events through fold + state, ask, count hits.

Protocol (the data README's): order each customer's purchase invoices by time and hold out
the last one; feed everything before it through the same fold and state the pipeline uses;
ask for recommendations for that customer at that instant; a hit at K is any held-out item
in the top K. The most-popular baseline ranks items by purchase count over exactly the same
prefix. Splits are time windows over the held-out invoices: a customer belongs to a split
when their last invoice *among the events before the split's end* falls inside the window,
so a validation split ending where the test split starts never sees test data.

Because state at an instant depends only on the events before it, one replay answers every
split's queries. Candidates are gathered once per query and kept, so blend weights can be
tuned on the validation split without replaying.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from magnetar.personalization import records
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.recommend import (
    CATEGORY,
    COVISITATION,
    REPEAT,
    TRENDING,
    CandidatePool,
    RecommendRequest,
    blend,
    gather_candidates,
)
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import BlendWeights, TenantPersonalization
from magnetar.personalization.state import UserKey

KS = (10, 20)


@dataclass(frozen=True, slots=True)
class Split:
    """Held-out invoices whose time falls in [start_ms, end_ms)."""

    name: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class HeldOutBasket:
    split: str
    user_id: str
    session_id: str
    at_ms: int
    # (occurred_at, event_id) of the basket's first line: everything ordered before it is fed.
    cut: tuple[int, str]
    items: frozenset[str]


def held_out_baskets(
    events: Sequence[EnrichedEvent], splits: Sequence[Split], is_known_user: Callable[[str], bool]
) -> tuple[list[HeldOutBasket], Counter[str]]:
    """Each split's held-out basket per customer, and counts of customers left out (by why).

    Only customers with an earlier purchase invoice are asked: next-basket prediction is about
    returning customers (a first-time customer gets trending, as does the baseline).
    """
    baskets: list[HeldOutBasket] = []
    left_out: Counter[str] = Counter()
    for split in splits:
        # user -> session -> [cut, items]; invoices in order of their first line.
        sessions: dict[str, dict[str, tuple[tuple[int, str], set[str]]]] = {}
        for event in events:
            if event.occurred_at >= split.end_ms:
                continue
            if event.type != records.PURCHASE or not is_known_user(event.user_id):
                continue
            by_session = sessions.setdefault(event.user_id, {})
            key = (event.occurred_at, event.event_id)
            found = by_session.get(event.session_id)
            if found is None:
                by_session[event.session_id] = (key, {event.item_id})
            else:
                found[1].add(event.item_id)
                if key < found[0]:
                    by_session[event.session_id] = (key, found[1])
        for user_id, by_session in sessions.items():
            ordered = sorted(by_session.items(), key=lambda pair: pair[1][0])
            session_id, (cut, items) = ordered[-1]
            if not split.start_ms <= cut[0] < split.end_ms:
                continue
            if len(ordered) < 2:
                left_out[f"{split.name}: first-time customer"] += 1
                continue
            baskets.append(
                HeldOutBasket(split.name, user_id, session_id, cut[0], cut, frozenset(items))
            )
    return baskets, left_out


@dataclass(frozen=True, slots=True)
class Query:
    """One held-out basket with what both methods saw at its instant."""

    basket: HeldOutBasket
    pool: CandidatePool
    most_popular: tuple[str, ...]


def replay(
    events: Iterable[EnrichedEvent],
    baskets: Sequence[HeldOutBasket],
    settings: TenantPersonalization,
    tenant_id: str,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> list[Query]:
    """Feed events in (occurred_at, event_id) order, stopping before each held-out basket to
    gather its candidates and the most-popular top list.

    `events` must already be in that order (a file replay is). Batches are folded with the
    stored recent items as context, exactly as the materializer does, so the batch size does
    not change the result.
    """
    state = MemoryState(settings.signals)
    k = max(KS)
    # Several splits may hold out the same invoice; ask once per (split, basket) anyway.
    pending_queries = sorted(baskets, key=lambda b: (b.cut, b.split))
    next_query = 0
    purchases: Counter[str] = Counter()
    batch: list[EnrichedEvent] = []
    queries: list[Query] = []
    fed = 0

    def flush() -> None:
        nonlocal fed
        if not batch:
            return
        users = sorted({UserKey(e.tenant_id, e.user_id) for e in batch})
        state.apply(fold_events(batch, settings.signals, state.recent_for(users)))
        for event in batch:
            if event.type == records.PURCHASE:
                purchases[event.item_id] += 1
        fed += len(batch)
        batch.clear()
        # The state is millions of long-lived, acyclic objects; without freezing them every
        # full collection walks all of them again and the replay takes twice as long.
        gc.freeze()
        if progress is not None:
            progress(fed)

    for event in events:
        key = (event.occurred_at, event.event_id)
        if next_query < len(pending_queries) and pending_queries[next_query].cut <= key:
            flush()
            popular = tuple(
                item for item, _ in heapq.nsmallest(k, purchases.items(), key=_popularity_rank)
            )
            while next_query < len(pending_queries) and pending_queries[next_query].cut <= key:
                basket = pending_queries[next_query]
                request = RecommendRequest(tenant_id, basket.user_id, k=k)
                pool = gather_candidates(state, request, settings, basket.at_ms)
                queries.append(Query(basket, pool, popular))
                next_query += 1
        batch.append(event)
        if len(batch) >= batch_size:
            flush()
    flush()
    gc.unfreeze()
    return queries


def _popularity_rank(pair: tuple[str, int]) -> tuple[int, str]:
    return (-pair[1], pair[0])


@dataclass(frozen=True, slots=True)
class HitRates:
    users: int
    hits: Mapping[int, int]

    def rate(self, k: int) -> float:
        return self.hits[k] / self.users if self.users else 0.0


def hit_rates(
    queries: Iterable[Query], ranking: Callable[[Query], Sequence[str]], ks: Sequence[int] = KS
) -> HitRates:
    users = 0
    hits = dict.fromkeys(ks, 0)
    for query in queries:
        users += 1
        ranked = ranking(query)
        for k in ks:
            if not query.basket.items.isdisjoint(ranked[:k]):
                hits[k] += 1
    return HitRates(users, hits)


def most_popular(query: Query) -> Sequence[str]:
    return query.most_popular


def blended(weights: BlendWeights) -> Callable[[Query], Sequence[str]]:
    k = max(KS)

    def ranking(query: Query) -> Sequence[str]:
        return [r.item_id for r in blend(query.pool, weights, k)]

    return ranking


# Weights are scale-free (only their ratios matter), so repeat is pinned to 1 and the others
# vary around it, plus a few grid points without repeat at all; each strategy alone is
# reported separately anyway.
BLEND_GRID: tuple[BlendWeights, ...] = tuple(
    BlendWeights(covisitation=c, repeat=1.0, category=g, trending=t)
    for c, g, t in itertools.product(
        (0.0, 0.1, 0.25, 0.5, 1.0, 2.0), (0.0, 0.1, 0.3), (0.0, 0.05, 0.2, 0.5)
    )
) + tuple(
    BlendWeights(covisitation=1.0, repeat=0.0, category=g, trending=t)
    for g, t in itertools.product((0.0, 0.3), (0.0, 0.2))
)


def tune_blend(
    queries: Sequence[Query], grid: Sequence[BlendWeights] = BLEND_GRID
) -> tuple[BlendWeights, HitRates]:
    """The weights with the best hit rate at the largest K (ties: at the smallest K, then the
    earlier grid entry, so the choice is reproducible), and their exact hit rates.

    The search scores each query's candidates as plain weighted sums (no trending fill-up),
    which is what `blend` does whenever a user has k candidates; the returned hit rates are
    recomputed with `blend` itself.
    """
    k = max(KS)
    tables = [_score_table(query) for query in queries]
    best: tuple[tuple[int, int], BlendWeights] | None = None
    for weights in grid:
        w = (weights.covisitation, weights.repeat, weights.category, weights.trending)
        hits_large = hits_small = 0
        for items, rows, held_out in tables:
            totals = [
                (-(w[0] * a + w[1] * b + w[2] * c + w[3] * d), item)
                for item, (a, b, c, d) in zip(items, rows, strict=True)
            ]
            ranked = [item for _, item in heapq.nsmallest(k, totals)]
            hits_large += not held_out.isdisjoint(ranked)
            hits_small += not held_out.isdisjoint(ranked[: min(KS)])
        if best is None or (hits_large, hits_small) > best[0]:
            best = ((hits_large, hits_small), weights)
    assert best is not None, "empty grid"
    return best[1], hit_rates(queries, blended(best[1]))


def _score_table(
    query: Query,
) -> tuple[list[str], list[tuple[float, float, float, float]], frozenset[str]]:
    pool = query.pool.strategies
    items = sorted({item for candidates in pool.values() for item in candidates.scores})
    rows = [
        (
            pool[COVISITATION].scores.get(item, 0.0),
            pool[REPEAT].scores.get(item, 0.0),
            pool[CATEGORY].scores.get(item, 0.0),
            pool[TRENDING].scores.get(item, 0.0),
        )
        for item in items
    ]
    return items, rows, query.basket.items


def lift(ours: float, baseline: float) -> float | None:
    """Relative improvement over the baseline (0.2 = 20 % better); None without a baseline."""
    return None if baseline == 0 else ours / baseline - 1.0


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One method's hit rates on one split, with its lift over most-popular on that split."""

    split: str
    method: str
    rates: HitRates
    lift: Mapping[int, float | None]


@dataclass(frozen=True, slots=True)
class CandidateReport:
    """One tenant configuration: the weights tuned for it on validation, and every method's
    results on every split with those weights."""

    settings: TenantPersonalization
    tuned: BlendWeights
    validation: HitRates
    results: tuple[MethodResult, ...]


BASELINE = "most popular (baseline)"
TUNED = "magnetar, weights tuned on validation"
DEFAULT = "magnetar, default weights"
_SINGLE = {
    "co-visitation only": BlendWeights(1.0, 0.0, 0.0, 0.0),
    "repeat only": BlendWeights(0.0, 1.0, 0.0, 0.0),
    "category only": BlendWeights(0.0, 0.0, 1.0, 0.0),
    "trending only": BlendWeights(0.0, 0.0, 0.0, 1.0),
}


def evaluate_candidate(
    events: Sequence[EnrichedEvent],
    baskets: Sequence[HeldOutBasket],
    splits: tuple[Split, Split],
    settings: TenantPersonalization,
    tenant_id: str,
    progress: Callable[[str, int], None] | None = None,
) -> CandidateReport:
    """Replay once with `settings`, tune blend weights on the first split (validation) only,
    then measure every method on both splits. `events` must be in (occurred_at, event_id)
    order; `baskets` come from `held_out_baskets` over the same splits."""
    validation = splits[0]
    queries = replay(events, baskets, settings, tenant_id, progress=_staged(progress, "replay"))
    if progress is not None:
        progress("tuning blend weights on validation", 0)
    weights, rates = tune_blend([q for q in queries if q.basket.split == validation.name])
    methods: list[tuple[str, Callable[[Query], Sequence[str]]]] = [
        (BASELINE, most_popular),
        (TUNED, blended(weights)),
        (DEFAULT, blended(settings.recommend.blend)),
        *((name, blended(single)) for name, single in _SINGLE.items()),
    ]
    results: list[MethodResult] = []
    for split in splits:
        on_split = [q for q in queries if q.basket.split == split.name]
        baseline = hit_rates(on_split, most_popular)
        for name, ranking in methods:
            found = baseline if ranking is most_popular else hit_rates(on_split, ranking)
            lifts = {k: lift(found.rate(k), baseline.rate(k)) for k in KS}
            results.append(MethodResult(split.name, name, found, lifts))
    return CandidateReport(settings, weights, rates, tuple(results))


def choose(candidates: Sequence[CandidateReport]) -> CandidateReport:
    """The configuration with the best validation hit rate at the largest K (then smallest K,
    then the earliest candidate): test results play no part in the choice."""
    big, small = max(KS), min(KS)
    return max(candidates, key=lambda c: (c.validation.rate(big), c.validation.rate(small)))


def _staged(
    progress: Callable[[str, int], None] | None, stage: str
) -> Callable[[int], None] | None:
    if progress is None:
        return None
    report = progress

    def staged(done: int) -> None:
        report(stage, done)

    return staged
