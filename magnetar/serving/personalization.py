"""Recommendations, similar items, trending items and profiles for one tenant's callers.

`PersonalizationServing` is the domain side of `PersonalizationService`: it checks a request
against the documented limits, runs the personalization core over the tenant's state inside
one read scope (one tenant-scoped PostgreSQL connection in production), leaves out what the
catalog hides (deleted or unavailable items), and names related items by their catalog titles.

Who is "the user": the state counts an event under its user id, else its anonymous id, so
`user_id or anonymous_id` finds the same state. State is kept per user, not per session: a
request naming only a session has no history to read and is answered like an unknown user's
(co-visitation of its context items, then trending), with `cold_start` set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, replace
from itertools import islice
from typing import NamedTuple, Protocol

from magnetar.errors import InvalidArgument, NotFound, echo
from magnetar.personalization.errors import InvalidRequest, UnknownItem
from magnetar.personalization.recommend import (
    CATEGORY,
    REPEAT,
    CandidatePool,
    Recommendation,
    RecommendRequest,
    UserProfile,
    blend,
    gather_candidates,
    similar_items,
    trending,
    user_profile,
)
from magnetar.personalization.settings import TenantPersonalization
from magnetar.personalization.state import StateReader
from magnetar.serving.limits import (
    MAX_CONTEXT_ITEMS,
    MAX_EXCLUDED_ITEMS,
    MAX_FILTER_CATEGORIES,
    Violations,
)
from magnetar.serving.ranked_ahead import DEPTH, RankedAhead, Ranking, TooShallow, admitted
from magnetar.serving.reasons import ServedItem, served, titled

# The contract's trending windows, by the tenant settings' window names.
TRENDING_WINDOWS = {"HOUR": "1h", "DAY": "24h", "WEEK": "7d"}
MAX_PROFILE_RECENT_ITEMS = 100
DEFAULT_PROFILE_RECENT_ITEMS = 20
PROFILE_TOP_CATEGORIES = 10


class CatalogFact(NamedTuple):
    """What serving needs from an item's catalog entry."""

    title: str
    categories: tuple[str, ...]
    # False when the tenant deleted the item or marked it unavailable.
    visible: bool


class TenantClockPort(Protocol):
    def now_ms(self, tenant_id: str, wall_ms: int) -> int:
        """The instant the tenant is served at, at most `wall_ms` (may read its state: call
        it inside the request's scope)."""
        ...


class ServingState(StateReader, Protocol):
    """The personalization state plus the catalog, read in one scope per request."""

    def request(self, tenant_id: str) -> AbstractContextManager[None]:
        """Reads inside share one tenant-scoped scope (one connection, not one snapshot);
        store failures raise `magnetar.errors.Unavailable`."""
        ...

    def catalog_facts(self, tenant_id: str, item_ids: Sequence[str]) -> Mapping[str, CatalogFact]:
        """Catalog entries of the given items (deleted ones too, as not visible); items the
        catalog never had are absent."""
        ...


@dataclass(frozen=True, slots=True)
class ItemFilter:
    exclude_purchased: bool = False
    exclude_viewed: bool = False
    exclude_item_ids: tuple[str, ...] = ()
    # When not empty, only items in at least one of these categories.
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    k: int
    user_id: str = ""
    anonymous_id: str = ""
    session_id: str = ""
    context_item_ids: tuple[str, ...] = ()
    filter: ItemFilter = ItemFilter()


@dataclass(frozen=True, slots=True)
class SimilarItemsQuery:
    item_id: str
    k: int
    filter: ItemFilter = ItemFilter()
    # Whose purchases or views the filter excludes.
    user_id: str = ""


@dataclass(frozen=True, slots=True)
class TrendingQuery:
    # "HOUR", "DAY" or "WEEK"; None when the caller gave none.
    window: str | None
    k: int
    category: str = ""


@dataclass(frozen=True, slots=True)
class ProfileQuery:
    user_id: str = ""
    anonymous_id: str = ""
    # 0 means the default (20).
    recent_items_limit: int = 0


@dataclass(frozen=True, slots=True)
class Recommendations:
    items: tuple[ServedItem, ...]
    # The user had no usable history: the items are trending ones (or go with the context).
    cold_start: bool


def default_settings(tenant_id: str) -> TenantPersonalization:
    """Every tenant gets the defaults until tenants can configure personalization."""
    return _DEFAULTS


_DEFAULTS = TenantPersonalization()


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def _core_errors() -> Iterator[None]:
    """The core's errors as the domain errors the gateway maps to status codes."""
    try:
        yield
    except UnknownItem as error:
        raise NotFound(
            f"item {echo(error.item_id)!r} is neither in the catalog nor in any event",
            reason="ITEM_NOT_FOUND",
            metadata={"item_id": echo(error.item_id)},
        ) from error
    except InvalidRequest as error:
        raise InvalidArgument(str(error), reason="INVALID_ARGUMENT") from error


def _cold_start(pool: CandidatePool) -> bool:
    """The user had no usable history: no repeat and no category candidates."""
    return not (pool.strategies[REPEAT].scores or pool.strategies[CATEGORY].scores)


def _check_filter(violations: Violations, item_filter: ItemFilter, field: str) -> None:
    violations.identifiers(
        f"{field}.exclude_item_ids", item_filter.exclude_item_ids, limit=MAX_EXCLUDED_ITEMS
    )
    violations.identifiers(
        f"{field}.categories", item_filter.categories, limit=MAX_FILTER_CATEGORIES
    )


class PersonalizationServing:
    """The personalization core over one process's state, for any tenant."""

    def __init__(
        self,
        state: ServingState,
        settings: Callable[[str], TenantPersonalization] = default_settings,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        tenant_clock: TenantClockPort | None = None,
        ranked_ahead: RankedAhead | None = None,
    ) -> None:
        """`clock_ms` is wall-clock now; with a `tenant_clock` each tenant is served at its
        own clock (`magnetar.serving.tenant_clock`), else at wall-clock now."""
        self._state = state
        self._settings = settings
        self._clock_ms = clock_ms
        self._tenant_clock = tenant_clock
        # Rankings made ahead (`magnetar.serving.ranked_ahead`); None ranks every request.
        self._ahead = ranked_ahead

    def _now(self, tenant_id: str) -> int:
        wall = self._clock_ms()
        return wall if self._tenant_clock is None else self._tenant_clock.now_ms(tenant_id, wall)

    def recommend(self, tenant_id: str, query: RecommendQuery) -> Recommendations:
        settings = self._settings(tenant_id)
        violations = Violations()
        violations.k("k", query.k, settings.recommend.max_k)
        for field in ("user_id", "anonymous_id", "session_id"):
            violations.identifier(field, getattr(query, field))
        if not (query.user_id or query.anonymous_id or query.session_id):
            violations.add("user_id", "one of user_id, anonymous_id, session_id is required")
        violations.identifiers("context_item_ids", query.context_item_ids, limit=MAX_CONTEXT_ITEMS)
        _check_filter(violations, query.filter, "filter")
        violations.raise_if_any("invalid recommendation request")

        request = RecommendRequest(
            tenant_id=tenant_id,
            user_id=query.user_id or query.anonymous_id or None,
            k=query.k,
            context_item_ids=tuple(dict.fromkeys(query.context_item_ids)),
            exclude_purchased=query.filter.exclude_purchased,
            exclude_seen=query.filter.exclude_viewed,
            exclude_item_ids=frozenset(query.filter.exclude_item_ids),
            categories=tuple(dict.fromkeys(query.filter.categories)),
        )
        if (
            self._ahead is not None
            and request.user_id
            and not (request.context_item_ids or request.categories)
        ):
            # The common shape: the user's ranking, made ahead, filtered.
            with suppress(TooShallow):
                return self._from_ranking(self._ahead, request, settings)
        with self._state.request(tenant_id), _core_errors():
            now = self._now(tenant_id)
            pool = gather_candidates(self._state, request, settings, now)
            items = self._best_visible(tenant_id, pool, settings, query.k)
        return Recommendations(tuple(items), cold_start=_cold_start(pool))

    def _from_ranking(
        self,
        ahead: RankedAhead,
        request: RecommendRequest,
        settings: TenantPersonalization,
    ) -> Recommendations:
        tenant_id, user_id = request.tenant_id, request.user_id
        assert user_id is not None
        with self._state.request(tenant_id), _core_errors():
            now = self._now(tenant_id)
            ranking = ahead.get(tenant_id, user_id)
            if ranking is None:
                ranking = self._rank(ahead, tenant_id, user_id, settings, now)
            wanted = admitted(
                ranking, request.exclude_item_ids, request.exclude_purchased, request.exclude_seen
            )
            items = self._visible(tenant_id, wanted, request.k)
        return Recommendations(tuple(items), cold_start=ranking.cold_start)

    def _rank(
        self,
        ahead: RankedAhead,
        tenant_id: str,
        user_id: str,
        settings: TenantPersonalization,
        now: int,
    ) -> Ranking:
        """The user's ranking for any filter (none applied), kept for the next requests."""
        token = ahead.token()
        with ahead.recording() as shared:
            pool = gather_candidates(
                self._state, RecommendRequest(tenant_id, user_id), settings, now
            )
        # One more than kept: enough to say whether the ranking was cut, and blending every
        # candidate only to keep DEPTH of them built hundreds of results per ranking.
        ranked = blend(pool, settings.recommend.blend, DEPTH + 1)
        ranking = Ranking(
            order=tuple(served(r) for r in ranked[:DEPTH]),
            cut=len(ranked) > DEPTH,
            purchased=pool.purchased,
            seen=pool.seen,
            cold_start=_cold_start(pool),
        )
        ahead.keep(tenant_id, user_id, ranking, shared, token)
        return ranking

    def _best_visible(
        self, tenant_id: str, pool: CandidatePool, settings: TenantPersonalization, k: int
    ) -> list[ServedItem]:
        """The top `k` candidates the catalog does not hide. Ranks a few more than `k` (the
        catalog rarely hides any), and more only when that was not enough."""
        wanted = 2 * k + 10
        while True:
            ranked = blend(pool, settings.recommend.blend, wanted)
            items = self._visible(tenant_id, map(served, ranked), k)
            if len(items) == k or len(ranked) < wanted:
                return items
            wanted *= 4

    def similar_items(self, tenant_id: str, query: SimilarItemsQuery) -> list[ServedItem]:
        settings = self._settings(tenant_id)
        violations = Violations()
        violations.identifier("item_id", query.item_id, required=True)
        violations.k("k", query.k, settings.recommend.max_k)
        violations.identifier("user_id", query.user_id)
        _check_filter(violations, query.filter, "filter")
        violations.raise_if_any("invalid similar-items request")

        # As many as the core gives: filters and the catalog may leave some out.
        wide = settings.recommend.max_k
        with self._state.request(tenant_id), _core_errors():
            now = self._now(tenant_id)
            try:
                found = similar_items(self._state, tenant_id, query.item_id, wide, settings, now)
            except UnknownItem:
                found = self._similar_to_catalog_item(tenant_id, query.item_id, wide, now)
            kept = self._filtered(tenant_id, found, query, settings, now)
            return self._visible(tenant_id, map(served, kept), query.k)

    def _similar_to_catalog_item(
        self, tenant_id: str, item_id: str, k: int, now: int
    ) -> list[Recommendation]:
        """An item no event has named yet: what is popular in its catalog categories."""
        fact = self._state.catalog_facts(tenant_id, [item_id]).get(item_id)
        if fact is None or not fact.visible:
            raise UnknownItem(item_id)
        window = self._settings(tenant_id).recommend.trending_window
        popular = self._state.trending_in_categories(
            tenant_id, window, list(fact.categories), now, k
        )
        found: dict[str, Recommendation] = {}
        for category in fact.categories:
            for scored in popular.get(category, ()):
                if scored.item_id != item_id and scored.item_id not in found:
                    reason = f"popular in {category}"
                    found[scored.item_id] = Recommendation(scored.item_id, 0.0, reason, CATEGORY)
        return list(found.values())[:k]

    def _filtered(
        self,
        tenant_id: str,
        found: Sequence[Recommendation],
        query: SimilarItemsQuery,
        settings: TenantPersonalization,
        now: int,
    ) -> list[Recommendation]:
        item_filter = query.filter
        excluded = {query.item_id, *item_filter.exclude_item_ids}
        if query.user_id and item_filter.exclude_purchased:
            excluded |= self._state.purchased_items(tenant_id, query.user_id)
        if query.user_id and item_filter.exclude_viewed:
            # "Viewed" as the core's `exclude_seen` means it: recent items and affinities.
            limit = settings.recommend.candidates_per_strategy
            recent = self._state.recent_items(tenant_id, query.user_id, limit)
            liked = self._state.user_item_affinities(tenant_id, query.user_id, now, limit)
            excluded |= {r.item_id for r in recent} | {s.item_id for s in liked}
        kept = [r for r in found if r.item_id not in excluded]
        if item_filter.categories and kept:
            wanted = set(item_filter.categories)
            known = self._state.item_categories(tenant_id, [r.item_id for r in kept])
            kept = [r for r in kept if wanted.intersection(known.get(r.item_id, ()))]
        return kept

    def trending(self, tenant_id: str, query: TrendingQuery) -> list[ServedItem]:
        settings = self._settings(tenant_id)
        violations = Violations()
        window = TRENDING_WINDOWS.get(query.window or "")
        if window is None:
            violations.add("window", f"must be one of {', '.join(TRENDING_WINDOWS)}")
        violations.identifier("category", query.category)
        violations.k("k", query.k, settings.recommend.max_k)
        violations.raise_if_any("invalid trending request")
        assert window is not None

        category = query.category or None
        with self._state.request(tenant_id), _core_errors():
            now = self._now(tenant_id)
            found = trending(
                self._state, tenant_id, window, category, settings.recommend.max_k, settings, now
            )
            return self._visible(tenant_id, map(served, found), query.k)

    def user_profile(self, tenant_id: str, query: ProfileQuery) -> UserProfile:
        violations = Violations()
        violations.identifier("user_id", query.user_id)
        violations.identifier("anonymous_id", query.anonymous_id)
        if not (query.user_id or query.anonymous_id):
            violations.add("user_id", "one of user_id, anonymous_id is required")
        if not 0 <= query.recent_items_limit <= MAX_PROFILE_RECENT_ITEMS:
            violations.add(
                "recent_items_limit", f"must be between 0 and {MAX_PROFILE_RECENT_ITEMS}"
            )
        violations.raise_if_any("invalid profile request")

        subject = query.user_id or query.anonymous_id
        limit = query.recent_items_limit or DEFAULT_PROFILE_RECENT_ITEMS
        with self._state.request(tenant_id), _core_errors():
            now = self._now(tenant_id)
            profile = user_profile(
                self._state, tenant_id, subject, now, max(limit, PROFILE_TOP_CATEGORIES)
            )
        if profile is None:
            raise NotFound(
                "the tenant has no state for this user",
                reason="USER_NOT_FOUND",
                metadata={"user_id": subject},
            )
        return replace(
            profile,
            recent_items=profile.recent_items[:limit],
            top_categories=profile.top_categories[:PROFILE_TOP_CATEGORIES],
        )

    def _visible(self, tenant_id: str, ranked: Iterable[ServedItem], k: int) -> list[ServedItem]:
        """The best `k` items the catalog does not hide, reasons naming related items by title.

        Looks the catalog up a slice at a time: hidden items are rare, so the first slice
        almost always holds k visible items.
        """
        chunk = max(2 * k, 20)
        kept: list[ServedItem] = []
        items = iter(ranked)
        while part := list(islice(items, chunk)):
            related = {i.reason.related_item_id for i in part if i.reason.related_item_id}
            wanted = list(dict.fromkeys([*(i.item_id for i in part), *sorted(related)]))
            facts = self._state.catalog_facts(tenant_id, wanted)
            titles = {item_id: fact.title for item_id, fact in facts.items() if fact.title}
            for item in part:
                fact = facts.get(item.item_id)
                if fact is None or fact.visible:
                    kept.append(titled(item, titles))
                    if len(kept) == k:
                        return kept
        return kept
