"""Tenant-wide popularity, read at most once per second per process.

Trending lists are the same for every user of a tenant, and ranking them costs PostgreSQL a
pass over every item of the window (each score decays with the time since it was last
written, so no index holds the order). Every recommendation asks for them, so a gateway
answering hundreds of recommendations per second would rank the same items hundreds of
times per second. Served for up to `ttl_ms` instead: personal signals (recent items,
affinities, co-visitation) are still read live, so a user's own events show at once, and
popularity lags by at most `ttl_ms`. Empty lists are not kept: they cost nothing to read,
and keeping one would hide a new tenant's (or category's) first items for a whole TTL.

Everything else passes through to the wrapped state unchanged.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager

from magnetar.personalization.state import (
    RecentItem,
    ScoredCategory,
    ScoredItem,
    UserActivity,
)
from magnetar.serving.personalization import CatalogFact, ServingState

Ranked = tuple[ScoredItem, ...]


class _Expiring:
    """A bounded map whose entries expire `ttl_ms` after they were put."""

    def __init__(self, ttl_ms: int, max_entries: int, clock_ms: Callable[[], int]) -> None:
        self._ttl_ms = ttl_ms
        self._max_entries = max_entries
        self._clock_ms = clock_ms
        self._entries: OrderedDict[Hashable, tuple[int, Ranked]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Ranked | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= self._clock_ms():
                del self._entries[key]
                return None
            return found[1]

    def put(self, key: Hashable, value: Ranked) -> None:
        with self._lock:
            self._entries[key] = (self._clock_ms() + self._ttl_ms, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class TrendingCache:
    """A `ServingState` that serves trending lists from a short-lived cache."""

    def __init__(
        self,
        state: ServingState,
        *,
        ttl_ms: int = 1000,
        max_entries: int = 10_000,
        clock_ms: Callable[[], int] = _monotonic_ms,
    ) -> None:
        self._state = state
        self._cache = _Expiring(ttl_ms, max_entries, clock_ms)

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        key = ("trending", tenant_id, window, limit)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = tuple(self._state.trending(tenant_id, window, now_ms, limit))
        if found:
            self._cache.put(key, found)
        return found

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        def key(category: str) -> tuple[str, str, str, str, int]:
            return ("in_category", tenant_id, window, category, limit_per_category)

        found: dict[str, Sequence[ScoredItem]] = {}
        missing: list[str] = []
        for category in dict.fromkeys(categories):
            cached = self._cache.get(key(category))
            if cached is None:
                missing.append(category)
            else:
                found[category] = cached
        if missing:
            fresh = self._state.trending_in_categories(
                tenant_id, window, missing, now_ms, limit_per_category
            )
            for category in missing:
                items = tuple(fresh.get(category, ()))
                if items:
                    self._cache.put(key(category), items)
                found[category] = items
        return found

    # -- pass-through ----------------------------------------------------------------------

    def request(self, tenant_id: str) -> AbstractContextManager[None]:
        return self._state.request(tenant_id)

    def catalog_facts(self, tenant_id: str, item_ids: Sequence[str]) -> Mapping[str, CatalogFact]:
        return self._state.catalog_facts(tenant_id, item_ids)

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        return self._state.recent_items(tenant_id, user_id, limit)

    def user_item_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        return self._state.user_item_affinities(tenant_id, user_id, now_ms, limit)

    def user_category_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredCategory]:
        return self._state.user_category_affinities(tenant_id, user_id, now_ms, limit)

    def purchased_items(self, tenant_id: str, user_id: str) -> frozenset[str]:
        return self._state.purchased_items(tenant_id, user_id)

    def user_activity(self, tenant_id: str, user_id: str) -> UserActivity | None:
        return self._state.user_activity(tenant_id, user_id)

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        return self._state.neighbours(tenant_id, item_ids, now_ms, limit_per_item)

    def item_categories(
        self, tenant_id: str, item_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, ...]]:
        return self._state.item_categories(tenant_id, item_ids)
