"""A `ServingState` answering from `ServingMemory` first, PostgreSQL on a miss.

The user's four answers (recent items, item and category affinities, purchases) and their
activity are computed from the user's rows (`UserRows`) with the same arithmetic whether the
rows came from memory or were just read, so a recommendation is the same either way. Shared
lists come from `SharedReadsCache`; catalog facts from memory, then PostgreSQL for the items
memory does not hold. In memory-only mode (`magnetar.serving.memory.memory_only`) anything
not held raises `NotInMemory` instead of being read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Protocol

from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import RecentItem, ScoredCategory, ScoredItem, UserActivity
from magnetar.serving.memory import ABSENT, NotInMemory, ServingMemory, in_memory_only
from magnetar.serving.personalization import CatalogFact, ServingState

if TYPE_CHECKING:
    from magnetar.db.user_snapshot import UserRows


class UserRowsSource(Protocol):
    def user_rows(self, tenant_id: str, user_id: str) -> UserRows | None:
        """The user's rows, read inside the current request; None outside one."""
        ...


class MemoryFirst:
    def __init__(
        self,
        state: ServingState,
        rows: UserRowsSource,
        memory: ServingMemory,
        signals: Callable[[str], SignalSettings],
    ) -> None:
        self._state = state
        self._rows_source = rows
        self._memory = memory
        self._signals = signals

    def request(self, tenant_id: str) -> AbstractContextManager[None]:
        if in_memory_only():
            return nullcontext()
        return self._state.request(tenant_id)

    def _rows(self, tenant_id: str, user_id: str) -> UserRows | None:
        memory = self._memory
        rows: UserRows | None = memory.user(tenant_id, user_id) if memory.live else None
        if rows is not None:
            return rows
        if in_memory_only():
            # While memory is not live it keeps nothing: a fill would be read for nothing.
            raise NotInMemory(partial(self._fill_user, tenant_id, user_id) if memory.live else None)
        token = memory.token()
        rows = self._rows_source.user_rows(tenant_id, user_id)
        if rows is not None and rows.items_complete:
            memory.put_user(tenant_id, user_id, rows, token)
        return rows

    def _fill_user(self, tenant_id: str, user_id: str) -> None:
        with self._state.request(tenant_id):
            self._rows(tenant_id, user_id)

    def _complete_rows(self, tenant_id: str, user_id: str) -> UserRows | None:
        rows = self._rows(tenant_id, user_id)
        return rows if rows is not None and rows.items_complete else None

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        rows = self._rows(tenant_id, user_id)
        if rows is None:
            return self._state.recent_items(tenant_id, user_id, limit)
        return rows.recent_items(limit)

    def user_item_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        rows = self._complete_rows(tenant_id, user_id)
        if rows is None:
            return self._state.user_item_affinities(tenant_id, user_id, now_ms, limit)
        half_life = self._signals(tenant_id).affinity_half_life_ms
        return rows.item_affinities(now_ms, half_life, limit)

    def user_category_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredCategory]:
        rows = self._rows(tenant_id, user_id)
        if rows is None:
            return self._state.user_category_affinities(tenant_id, user_id, now_ms, limit)
        half_life = self._signals(tenant_id).affinity_half_life_ms
        return rows.category_affinities(now_ms, half_life, limit)

    def purchased_items(self, tenant_id: str, user_id: str) -> frozenset[str]:
        rows = self._complete_rows(tenant_id, user_id)
        if rows is None:
            return self._state.purchased_items(tenant_id, user_id)
        return rows.purchased()

    def user_activity(self, tenant_id: str, user_id: str) -> UserActivity | None:
        rows = self._rows(tenant_id, user_id)
        if rows is None:
            return self._state.user_activity(tenant_id, user_id)
        return rows.activity

    def catalog_facts(self, tenant_id: str, item_ids: Sequence[str]) -> Mapping[str, CatalogFact]:
        memory = self._memory
        found: dict[str, CatalogFact] = {}
        missing: list[str] = []
        for item_id in item_ids:
            fact = memory.item(tenant_id, item_id) if memory.live else None
            if fact is None:
                missing.append(item_id)
            elif fact is not ABSENT:
                found[item_id] = fact
        if missing:
            if in_memory_only():
                fill = partial(self._fill_items, tenant_id, missing) if memory.live else None
                raise NotInMemory(fill)
            found.update(self._fill_items(tenant_id, missing))
        return found

    def _fill_items(self, tenant_id: str, item_ids: Sequence[str]) -> Mapping[str, CatalogFact]:
        token = self._memory.token()
        fetched = self._state.catalog_facts(tenant_id, item_ids)
        for item_id in item_ids:
            self._memory.put_item(tenant_id, item_id, fetched.get(item_id, ABSENT), token)
        return fetched

    # -- shared lists: SharedReadsCache (which raises NotInMemory itself) ----------------

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        return self._state.trending(tenant_id, window, now_ms, limit)

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        return self._state.trending_in_categories(
            tenant_id, window, categories, now_ms, limit_per_category
        )

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        return self._state.neighbours(tenant_id, item_ids, now_ms, limit_per_item)

    def item_categories(
        self, tenant_id: str, item_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, ...]]:
        if in_memory_only():
            raise NotInMemory
        return self._state.item_categories(tenant_id, item_ids)
