"""Personalization state in process memory: applies `StateDelta`s, serves `StateReader`.

Used by unit tests and by the offline evaluation, which feeds a whole data set through the
same fold the materializer uses. It applies each key with the merge rules defined next to
the value types, exactly as the PostgreSQL upserts must.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from magnetar.personalization.decay import DecayedScore, decayed, merge_optional
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import (
    ItemCategories,
    RecentItem,
    ScoredCategory,
    ScoredItem,
    StateDelta,
    UserActivity,
    UserItemSignal,
    UserKey,
    distinct_items,
    merge_recent,
)


def _top(
    scores: Mapping[str, DecayedScore], now_ms: int, half_life_ms: int, limit: int
) -> list[tuple[str, float]]:
    """The `limit` best positive scores decayed to `now_ms`; ties by ascending key.

    Written as one comprehension over plain tuples because it scans whole neighbour lists
    and the whole catalog for trending on every request.
    """
    ranked = [
        (-now_value, key)
        for key, (value, as_of) in scores.items()
        if value > 0 and (now_value := decayed(value, now_ms - as_of, half_life_ms)) > 0
    ]
    return [(key, -negated) for negated, key in heapq.nsmallest(limit, ranked)]


@dataclass
class _TenantState:
    user_items: dict[str, dict[str, UserItemSignal]] = field(default_factory=dict)
    user_categories: dict[str, dict[str, DecayedScore]] = field(default_factory=dict)
    activity: dict[str, UserActivity] = field(default_factory=dict)
    recent: dict[str, tuple[RecentItem, ...]] = field(default_factory=dict)
    item_categories: dict[str, ItemCategories] = field(default_factory=dict)
    items_by_category: dict[str, set[str]] = field(default_factory=dict)
    popularity: dict[str, dict[str, DecayedScore]] = field(default_factory=dict)
    covisitation: dict[str, dict[str, DecayedScore]] = field(default_factory=dict)


_NO_STATE = _TenantState()


class MemoryState:
    """An in-memory `StateReader` that state deltas are applied to.

    Every tenant uses `signals` unless `per_tenant` overrides it; the same settings must have
    been used to fold the deltas applied here.
    """

    def __init__(
        self,
        signals: SignalSettings | None = None,
        per_tenant: Mapping[str, SignalSettings] | None = None,
    ) -> None:
        self._default = signals or SignalSettings()
        self._per_tenant = dict(per_tenant or {})
        self._tenants: dict[str, _TenantState] = {}

    def signals(self, tenant_id: str) -> SignalSettings:
        return self._per_tenant.get(tenant_id, self._default)

    def _read(self, tenant_id: str) -> _TenantState:
        # Reads of a tenant without state see an empty one, without creating it.
        return self._tenants.get(tenant_id, _NO_STATE)

    def _tenant(self, tenant_id: str) -> _TenantState:
        state = self._tenants.get(tenant_id)
        if state is None:
            state = self._tenants[tenant_id] = _TenantState()
        return state

    # -- writing ---------------------------------------------------------------------------

    def apply(self, delta: StateDelta) -> None:
        """Merge a batch's delta into the state, one key at a time."""
        for ui_key, signal in delta.user_items.items():
            h = self.signals(ui_key.tenant_id).affinity_half_life_ms
            items = self._tenant(ui_key.tenant_id).user_items.setdefault(ui_key.user_id, {})
            known = items.get(ui_key.item_id)
            items[ui_key.item_id] = signal if known is None else known.merge(signal, h)
        for uc_key, score in delta.user_categories.items():
            h = self.signals(uc_key.tenant_id).affinity_half_life_ms
            cats = self._tenant(uc_key.tenant_id).user_categories.setdefault(uc_key.user_id, {})
            cats[uc_key.category] = merge_optional(cats.get(uc_key.category), score, h)
        for user, counts in delta.user_activity.items():
            activity = self._tenant(user.tenant_id).activity
            known_counts = activity.get(user.user_id)
            activity[user.user_id] = counts if known_counts is None else known_counts.merge(counts)
        for user, entries in delta.recent_items.items():
            limit = self.signals(user.tenant_id).recent_items_limit
            recent = self._tenant(user.tenant_id).recent
            recent[user.user_id] = merge_recent(recent.get(user.user_id, ()), entries, limit)
        for item_key, observed in delta.item_categories.items():
            self._set_categories(item_key.tenant_id, item_key.item_id, observed)
        for w_key, score in delta.item_popularity.items():
            h = self.signals(w_key.tenant_id).window_half_life_ms(w_key.window)
            window = self._tenant(w_key.tenant_id).popularity.setdefault(w_key.window, {})
            window[w_key.item_id] = merge_optional(window.get(w_key.item_id), score, h)
        for pair, score in delta.covisitation.items():
            h = self.signals(pair.tenant_id).covisitation_half_life_ms
            others = self._tenant(pair.tenant_id).covisitation.setdefault(pair.item_id, {})
            others[pair.other_item_id] = merge_optional(others.get(pair.other_item_id), score, h)

    def _set_categories(self, tenant_id: str, item_id: str, observed: ItemCategories) -> None:
        state = self._tenant(tenant_id)
        known = state.item_categories.get(item_id)
        merged = observed if known is None else known.merge(observed)
        if known is not None:
            for category in known.categories:
                state.items_by_category.get(category, set()).discard(item_id)
        for category in merged.categories:
            state.items_by_category.setdefault(category, set()).add(item_id)
        state.item_categories[item_id] = merged

    def recent_for(self, users: Sequence[UserKey]) -> dict[UserKey, tuple[RecentItem, ...]]:
        """The stored recent items of many users: the fold's cross-batch session context."""
        found: dict[UserKey, tuple[RecentItem, ...]] = {}
        for user in users:
            state = self._tenants.get(user.tenant_id)
            entries = state.recent.get(user.user_id) if state else None
            if entries:
                found[user] = entries
        return found

    # -- StateReader -----------------------------------------------------------------------

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        return distinct_items(self._read(tenant_id).recent.get(user_id, ()), limit)

    def user_item_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        items = self._read(tenant_id).user_items.get(user_id, {})
        h = self.signals(tenant_id).affinity_half_life_ms
        scores = {item_id: signal.score for item_id, signal in items.items()}
        return [ScoredItem(*pair) for pair in _top(scores, now_ms, h, limit)]

    def user_category_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredCategory]:
        cats = self._read(tenant_id).user_categories.get(user_id, {})
        h = self.signals(tenant_id).affinity_half_life_ms
        return [ScoredCategory(*pair) for pair in _top(cats, now_ms, h, limit)]

    def purchased_items(self, tenant_id: str, user_id: str) -> frozenset[str]:
        items = self._read(tenant_id).user_items.get(user_id, {})
        return frozenset(item_id for item_id, signal in items.items() if signal.purchases > 0)

    def user_activity(self, tenant_id: str, user_id: str) -> UserActivity | None:
        return self._read(tenant_id).activity.get(user_id)

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        covisitation = self._read(tenant_id).covisitation
        h = self.signals(tenant_id).covisitation_half_life_ms
        found: dict[str, Sequence[ScoredItem]] = {}
        for item_id in dict.fromkeys(item_ids):
            top = _top(covisitation.get(item_id, {}), now_ms, h, limit_per_item)
            if top:
                found[item_id] = [ScoredItem(*pair) for pair in top]
        return found

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        h = self.signals(tenant_id).window_half_life_ms(window)
        scores = self._read(tenant_id).popularity.get(window, {})
        return [ScoredItem(*pair) for pair in _top(scores, now_ms, h, limit)]

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        h = self.signals(tenant_id).window_half_life_ms(window)
        state = self._read(tenant_id)
        scores = state.popularity.get(window, {})
        found: dict[str, Sequence[ScoredItem]] = {}
        for category in dict.fromkeys(categories):
            members = state.items_by_category.get(category, set())
            in_category = {item_id: scores[item_id] for item_id in members if item_id in scores}
            found[category] = [
                ScoredItem(*pair) for pair in _top(in_category, now_ms, h, limit_per_category)
            ]
        return found

    def item_categories(
        self, tenant_id: str, item_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, ...]]:
        known = self._read(tenant_id).item_categories
        return {item_id: known[item_id].categories for item_id in item_ids if item_id in known}
