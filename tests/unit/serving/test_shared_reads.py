"""Popularity is read at most once per TTL; personal reads always go through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from magnetar.personalization.state import RecentItem, ScoredItem
from magnetar.serving.trending_cache import TrendingCache
from tests.unit.serving.fakes import NOW, TENANT, FakeServingState, shop


class CountingState(FakeServingState):
    def __init__(self) -> None:
        super().__init__(shop())
        self.reads: list[str] = []

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        self.reads.append(f"trending {window}")
        return super().trending(tenant_id, window, now_ms, limit)

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        self.reads.append(f"in {','.join(categories)}")
        return super().trending_in_categories(
            tenant_id, window, categories, now_ms, limit_per_category
        )

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        self.reads.append("recent")
        return super().recent_items(tenant_id, user_id, limit)


def test_trending_is_read_once_per_ttl_and_per_category() -> None:
    state = CountingState()
    clock = [0]
    cache = TrendingCache(state, ttl_ms=1000, clock_ms=lambda: clock[0])
    first = cache.trending(TENANT, "7d", NOW, 3)
    assert cache.trending(TENANT, "7d", NOW, 3) == first
    cache.trending_in_categories(TENANT, "7d", ["outdoor"], NOW, 5)
    both = cache.trending_in_categories(TENANT, "7d", ["outdoor", "kitchen"], NOW, 5)
    assert [s.item_id for s in both["kitchen"]] == ["mug"]
    assert state.reads == ["trending 7d", "in outdoor", "in kitchen"]
    clock[0] = 1000
    cache.trending(TENANT, "7d", NOW, 3)
    assert state.reads[-1] == "trending 7d"


def test_tenants_and_personal_reads_are_never_shared() -> None:
    state = CountingState()
    cache = TrendingCache(state, clock_ms=lambda: 0)
    cache.trending(TENANT, "7d", NOW, 3)
    assert cache.trending("globex", "7d", NOW, 3) == ()
    cache.recent_items(TENANT, "c1", 5)
    cache.recent_items(TENANT, "c1", 5)
    assert state.reads.count("recent") == 2
    assert state.reads.count("trending 7d") == 2
