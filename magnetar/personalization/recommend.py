"""Serving: recommendations, similar items, trending and user profiles over a `StateReader`.

A recommendation blends four candidate strategies, each normalised to [0, 1]:

- co-visitation: neighbours of the user's recent items and of the request's context items,
  each seed weighted by how recent it is;
- repeat: the user's own strongest item affinities (people re-buy and re-watch);
- category: what is popular in the user's favourite categories;
- trending: what is popular overall (or in the requested categories).

Every result carries the reason of the strategy that contributed most to its score. A user
the state does not know simply has no personal candidates: they get co-visitation of the
context items, if any, and trending, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from magnetar.personalization import records
from magnetar.personalization.decay import decay_factor
from magnetar.personalization.errors import InvalidRequest, UnknownItem
from magnetar.personalization.settings import BlendWeights, TenantPersonalization
from magnetar.personalization.state import RecentItem, ScoredCategory, ScoredItem, StateReader

COVISITATION = "covisitation"
REPEAT = "repeat"
CATEGORY = "category"
TRENDING = "trending"
STRATEGIES = (COVISITATION, REPEAT, CATEGORY, TRENDING)


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    """What the caller asks for. `user_id` may be an anonymous id, or None for no user."""

    tenant_id: str
    user_id: str | None
    k: int = 10
    context_item_ids: tuple[str, ...] = ()
    exclude_purchased: bool = False
    exclude_seen: bool = False
    exclude_item_ids: frozenset[str] = frozenset()
    # When non-empty, only items in at least one of these categories are returned.
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recommendation:
    item_id: str
    score: float
    reason: str
    strategy: str


@dataclass(frozen=True, slots=True)
class StrategyCandidates:
    """One strategy's candidates: normalised scores in [0, 1] and a reason per item."""

    strategy: str
    scores: Mapping[str, float]
    reasons: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CandidatePool:
    """Everything needed to rank: candidates per strategy and what the filters exclude.

    Gathering (reads) and blending (pure arithmetic) are separate so the offline evaluation
    can gather once per user and try many blend weights.
    """

    strategies: Mapping[str, StrategyCandidates]
    excluded: frozenset[str]
    # Categories of every candidate, only gathered when the request restricts categories.
    allowed: frozenset[str] | None = None
    trending_order: tuple[str, ...] = field(default=())
    # What `exclude_purchased` and `exclude_seen` leave out for this user, whatever the
    # request asked (so a ranking made once can be filtered for any later request).
    purchased: frozenset[str] = frozenset()
    seen: frozenset[str] = frozenset()


def _normalised(raw: Mapping[str, float]) -> dict[str, float]:
    top = max(raw.values(), default=0.0)
    if top <= 0:
        return {}
    return {item_id: value / top for item_id, value in raw.items() if value > 0}


def _check_k(k: int, settings: TenantPersonalization) -> None:
    if not 1 <= k <= settings.recommend.max_k:
        raise InvalidRequest(f"k must be between 1 and {settings.recommend.max_k}, got {k}")


def gather_candidates(
    reader: StateReader,
    request: RecommendRequest,
    settings: TenantPersonalization,
    now_ms: int,
) -> CandidatePool:
    """Read the state once and build every strategy's candidates for the request."""
    knobs = settings.recommend
    tenant = request.tenant_id
    recent: Sequence[RecentItem] = ()
    affinities: Sequence[ScoredItem] = ()
    categories: Sequence[ScoredCategory] = ()
    purchased: frozenset[str] = frozenset()
    if request.user_id is not None:
        user = request.user_id
        recent = reader.recent_items(tenant, user, knobs.seed_items)
        affinities = reader.user_item_affinities(
            tenant, user, now_ms, knobs.candidates_per_strategy
        )
        categories = reader.user_category_affinities(tenant, user, now_ms, knobs.top_categories)
        purchased = reader.purchased_items(tenant, user)

    strategies = {
        COVISITATION: _covisitation(reader, request, recent, settings, now_ms),
        REPEAT: _repeat(affinities, purchased),
        CATEGORY: _category(reader, tenant, categories, settings, now_ms),
        TRENDING: _trending(reader, request, settings, now_ms),
    }

    seen = frozenset(
        [*(entry.item_id for entry in recent), *(scored.item_id for scored in affinities)]
    )
    excluded = set(request.exclude_item_ids) | set(request.context_item_ids)
    if request.exclude_purchased:
        excluded |= purchased
    if request.exclude_seen:
        excluded |= seen

    allowed: frozenset[str] | None = None
    if request.categories:
        wanted = set(request.categories)
        candidates = sorted({item for s in strategies.values() for item in s.scores})
        known = reader.item_categories(tenant, candidates)
        allowed = frozenset(item for item, cats in known.items() if wanted.intersection(cats))
    trending_order = tuple(
        sorted(strategies[TRENDING].scores, key=lambda i: (-strategies[TRENDING].scores[i], i))
    )
    return CandidatePool(
        strategies, frozenset(excluded), allowed, trending_order, purchased=purchased, seen=seen
    )


def _covisitation(
    reader: StateReader,
    request: RecommendRequest,
    recent: Sequence[RecentItem],
    settings: TenantPersonalization,
    now_ms: int,
) -> StrategyCandidates:
    # Context items are what the user looks at right now: full weight. Recent items fade with
    # the affinity half-life, so last week's basket outweighs last year's.
    seeds: dict[str, tuple[float, str]] = {}
    for item_id in request.context_item_ids:
        seeds[item_id] = (1.0, records.VIEW)
    h = settings.signals.affinity_half_life_ms
    for entry in recent:
        weight = decay_factor(now_ms - entry.occurred_at, h)
        if weight > seeds.get(entry.item_id, (0.0, ""))[0]:
            seeds[entry.item_id] = (weight, entry.type)
    if not seeds:
        return StrategyCandidates(COVISITATION, {}, {})

    neighbours = reader.neighbours(
        request.tenant_id, list(seeds), now_ms, settings.recommend.neighbours_per_seed
    )
    raw: dict[str, float] = {}
    best_seed: dict[str, tuple[float, str]] = {}
    # In the seeds' order, whatever order the reader answered in: the sums (and so the
    # last bits of every score) must not depend on where the lists came from.
    for seed, (seed_weight, _) in seeds.items():
        found = neighbours.get(seed, ())
        if not found:
            continue
        total = sum(scored.score for scored in found)
        for scored in found:
            # Each seed's neighbours share its weight in proportion to their co-visitation, so
            # a best-seller seed with huge counts does not drown the others.
            contribution = seed_weight * scored.score / total
            raw[scored.item_id] = raw.get(scored.item_id, 0.0) + contribution
            if contribution > best_seed.get(scored.item_id, (0.0, ""))[0]:
                best_seed[scored.item_id] = (contribution, seed)
    reasons = {}
    for item_id, (_, seed) in best_seed.items():
        bought = seeds[seed][1] == records.PURCHASE
        reasons[item_id] = f"bought together with {seed}" if bought else f"viewed with {seed}"
    scores = _normalised(raw)
    return StrategyCandidates(COVISITATION, scores, {i: reasons[i] for i in scores})


def _repeat(affinities: Sequence[ScoredItem], purchased: frozenset[str]) -> StrategyCandidates:
    scores = _normalised({scored.item_id: scored.score for scored in affinities})
    reasons = {
        item_id: "you bought this before" if item_id in purchased else "you viewed this"
        for item_id in scores
    }
    return StrategyCandidates(REPEAT, scores, reasons)


def _category(
    reader: StateReader,
    tenant: str,
    categories: Sequence[ScoredCategory],
    settings: TenantPersonalization,
    now_ms: int,
) -> StrategyCandidates:
    if not categories:
        return StrategyCandidates(CATEGORY, {}, {})
    knobs = settings.recommend
    affinity = _normalised({scored.category: scored.score for scored in categories})
    popular = reader.trending_in_categories(
        tenant, knobs.trending_window, list(affinity), now_ms, knobs.candidates_per_strategy
    )
    raw: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    for category in affinity:
        items = popular.get(category, ())
        in_category = _normalised({scored.item_id: scored.score for scored in items})
        for item_id, popularity in in_category.items():
            contribution = affinity.get(category, 0.0) * popularity
            raw[item_id] = raw.get(item_id, 0.0) + contribution
            if contribution > best.get(item_id, (0.0, ""))[0]:
                best[item_id] = (contribution, category)
    scores = _normalised(raw)
    return StrategyCandidates(
        CATEGORY, scores, {item_id: f"popular in {best[item_id][1]}" for item_id in scores}
    )


def _trending(
    reader: StateReader,
    request: RecommendRequest,
    settings: TenantPersonalization,
    now_ms: int,
) -> StrategyCandidates:
    knobs = settings.recommend
    if not request.categories:
        found = reader.trending(
            request.tenant_id, knobs.trending_window, now_ms, knobs.candidates_per_strategy
        )
        scores = _normalised({scored.item_id: scored.score for scored in found})
        return StrategyCandidates(TRENDING, scores, dict.fromkeys(scores, "trending"))
    # A category filter would leave global trending mostly empty: look inside the categories.
    per_category = reader.trending_in_categories(
        request.tenant_id,
        knobs.trending_window,
        list(request.categories),
        now_ms,
        knobs.candidates_per_strategy,
    )
    raw: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for category in dict.fromkeys(request.categories):
        items = per_category.get(category, ())
        for item_id, value in _normalised({s.item_id: s.score for s in items}).items():
            if value > raw.get(item_id, 0.0):
                raw[item_id] = value
                reasons[item_id] = f"trending in {category}"
    return StrategyCandidates(TRENDING, raw, reasons)


def blend(pool: CandidatePool, weights: BlendWeights, k: int) -> list[Recommendation]:
    """Rank the pool's candidates by weighted score; fill up with trending if short."""
    by_strategy = {
        COVISITATION: weights.covisitation,
        REPEAT: weights.repeat,
        CATEGORY: weights.category,
        TRENDING: weights.trending,
    }
    totals: dict[str, float] = {}
    leading: dict[str, tuple[float, str]] = {}
    for name, candidates in pool.strategies.items():
        weight = by_strategy[name]
        if weight <= 0:
            continue
        for item_id, score in candidates.scores.items():
            if not _admitted(pool, item_id):
                continue
            contribution = weight * score
            totals[item_id] = totals.get(item_id, 0.0) + contribution
            if contribution > leading.get(item_id, (-1.0, ""))[0]:
                leading[item_id] = (contribution, name)
    ranked = sorted(totals, key=lambda item_id: (-totals[item_id], item_id))[:k]
    results = [
        Recommendation(
            item_id,
            totals[item_id],
            pool.strategies[leading[item_id][1]].reasons[item_id],
            leading[item_id][1],
        )
        for item_id in ranked
    ]
    if len(results) < k:
        # Fewer personal candidates than asked for: trending fills the rest, so a sparse
        # state still answers with k items when it knows that many.
        chosen = set(ranked)
        trending = pool.strategies[TRENDING]
        for item_id in pool.trending_order:
            if len(results) >= k:
                break
            if item_id not in chosen and _admitted(pool, item_id):
                results.append(Recommendation(item_id, 0.0, trending.reasons[item_id], TRENDING))
    return results


def _admitted(pool: CandidatePool, item_id: str) -> bool:
    if item_id in pool.excluded:
        return False
    return pool.allowed is None or item_id in pool.allowed


def recommend(
    reader: StateReader,
    request: RecommendRequest,
    settings: TenantPersonalization,
    now_ms: int,
) -> list[Recommendation]:
    """The top `request.k` items for the user, best first, each with a score and a reason.

    Raises `InvalidRequest` when `k` is outside 1..`settings.recommend.max_k`.
    """
    _check_k(request.k, settings)
    pool = gather_candidates(reader, request, settings, now_ms)
    return blend(pool, settings.recommend.blend, request.k)


def similar_items(
    reader: StateReader,
    tenant_id: str,
    item_id: str,
    k: int,
    settings: TenantPersonalization,
    now_ms: int,
) -> list[Recommendation]:
    """Items that go with `item_id`: its co-visitation neighbours, then popular items of its
    categories when it has too few neighbours.

    Raises `UnknownItem` for an item the state has never seen, `InvalidRequest` for a bad k.
    """
    _check_k(k, settings)
    categories = reader.item_categories(tenant_id, [item_id])
    if item_id not in categories:
        raise UnknownItem(item_id)
    found = reader.neighbours(tenant_id, [item_id], now_ms, k).get(item_id, ())
    results = [
        Recommendation(s.item_id, s.score, f"viewed or bought with {item_id}", COVISITATION)
        for s in found
        if s.item_id != item_id
    ]
    if len(results) < k and categories[item_id]:
        chosen = {r.item_id for r in results} | {item_id}
        window = settings.recommend.trending_window
        popular = reader.trending_in_categories(
            tenant_id, window, list(categories[item_id]), now_ms, k
        )
        for category, items in popular.items():
            for scored in items:
                if len(results) < k and scored.item_id not in chosen:
                    chosen.add(scored.item_id)
                    results.append(
                        Recommendation(scored.item_id, 0.0, f"popular in {category}", CATEGORY)
                    )
    return results[:k]


def trending(
    reader: StateReader,
    tenant_id: str,
    window: str,
    category: str | None,
    k: int,
    settings: TenantPersonalization,
    now_ms: int,
) -> list[Recommendation]:
    """The most popular items in a trending window, optionally within one category.

    Raises `UnknownWindow` (an `InvalidRequest`) for a window the tenant does not define.
    """
    _check_k(k, settings)
    settings.signals.window_half_life_ms(window)
    if category is None:
        found = reader.trending(tenant_id, window, now_ms, k)
        return [Recommendation(s.item_id, s.score, "trending", TRENDING) for s in found]
    found = reader.trending_in_categories(tenant_id, window, [category], now_ms, k).get(
        category, ()
    )
    reason = f"trending in {category}"
    return [Recommendation(s.item_id, s.score, reason, TRENDING) for s in found]


@dataclass(frozen=True, slots=True)
class UserProfile:
    user_id: str
    recent_items: tuple[RecentItem, ...]
    top_categories: tuple[ScoredCategory, ...]
    top_items: tuple[ScoredItem, ...]
    events: int
    purchases: int
    first_seen: int
    last_seen: int


def user_profile(
    reader: StateReader,
    tenant_id: str,
    user_id: str,
    now_ms: int,
    limit: int = 10,
) -> UserProfile | None:
    """What the state knows about a user; None when it knows nothing."""
    activity = reader.user_activity(tenant_id, user_id)
    if activity is None:
        return None
    return UserProfile(
        user_id=user_id,
        recent_items=tuple(reader.recent_items(tenant_id, user_id, limit)),
        top_categories=tuple(reader.user_category_affinities(tenant_id, user_id, now_ms, limit)),
        top_items=tuple(reader.user_item_affinities(tenant_id, user_id, now_ms, limit)),
        events=activity.events,
        purchases=activity.purchases,
        first_seen=activity.first_seen,
        last_seen=activity.last_seen,
    )
