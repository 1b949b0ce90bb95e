"""Bounded caches of answers from PostgreSQL that serve the last good one when it fails.

`AnswerCache` (pure, the caller's clock): an answer is fresh for `ttl_s`, then usable for
`stale_s` more when the store fails; beyond `capacity` entries the least recently used goes.
`CachedLookup` puts a blocking lookup behind such caches: one lookup per key at a time, at
most `max_lookups` keys at once (further misses refused, not queued), the last good answer
instead of `Unavailable`, and at most one failed lookup per key per `ttl_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from magnetar.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class AnswerCache(Generic[K, V]):
    def __init__(self, capacity: int, ttl_s: float, stale_s: float) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        # key → (fetched at, answer), least recently used first.
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def put(self, key: K, answer: V, now: float) -> None:
        self._entries[key] = (now, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def fresh(self, key: K, now: float) -> tuple[bool, V | None]:
        """(True, answer) while the answer is within its TTL, else (False, None)."""
        entry = self._entries.get(key)
        if entry is None or now >= entry[0] + self.ttl_s:
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def last_good(self, key: K, now: float) -> tuple[bool, V | None]:
        """(True, answer) while the answer is within TTL + `stale_s` (for when the store
        fails), else (False, None); an answer older than that is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if now >= entry[0] + self.ttl_s + self.stale_s:
            del self._entries[key]
            return False, None
        return True, entry[1]

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)


class CachedLookup(Generic[K, V]):
    def __init__(
        self,
        caches: Sequence[AnswerCache[K, V]],
        route: Callable[[V], AnswerCache[K, V]],
        *,
        run: Callable[[Callable[[], V]], Awaitable[V]],
        clock: Callable[[], float],
        what: str,
        max_lookups: int | None = None,
    ) -> None:
        self._caches = tuple(caches)
        self._route = route
        self._run = run
        self._clock = clock
        self._what = what
        self._max_lookups = max_lookups
        self._loading: dict[K, asyncio.Future[V]] = {}
        # The store failed at this time (monotonic); None while it answers.
        self._failed_at: float | None = None

    def cached(self, key: K) -> tuple[bool, V | None]:
        """A fresh answer if one is cached, without a lookup."""
        return self._find(key, stale=False)

    def _find(self, key: K, *, stale: bool) -> tuple[bool, V | None]:
        now = self._clock()
        for cache in self._caches:
            hit, answer = cache.last_good(key, now) if stale else cache.fresh(key, now)
            if hit:
                return True, answer
        return False, None

    def _recently_failed(self) -> bool:
        if self._failed_at is None:
            return False
        return self._clock() < self._failed_at + min(c.ttl_s for c in self._caches)

    async def get(self, key: K, fetch: Callable[[], V]) -> V:
        """The cached answer, else `fetch()`'s (run by `run`), else the last good one."""
        hit, answer = self.cached(key)
        if hit:
            return answer  # type: ignore[return-value]
        if self._recently_failed():
            hit, answer = self._find(key, stale=True)
            if hit:
                return answer  # type: ignore[return-value]
        loading = self._loading.get(key)
        if loading is None:
            if self._max_lookups is not None and len(self._loading) >= self._max_lookups:
                raise ResourceExhausted(
                    f"{self._max_lookups} {self._what} lookups in progress; retry shortly",
                    retry_after_s=0.1,
                    reason="LOOKUPS_BUSY",
                    metadata={"max_lookups_in_progress": str(self._max_lookups)},
                )
            loading = asyncio.ensure_future(self._load(key, fetch))
            self._loading[key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        # Shielded: a caller that goes away does not cancel the others' lookup.
        return await asyncio.shield(loading)

    async def _load(self, key: K, fetch: Callable[[], V]) -> V:
        try:
            answer = await self._run(fetch)
        except Unavailable:
            if self._failed_at is None:
                log.warning("%s lookups fail: serving the last good answers", self._what)
            self._failed_at = self._clock()
            hit, stale = self._find(key, stale=True)
            if hit:
                return stale  # type: ignore[return-value]
            raise
        if self._failed_at is not None:
            log.warning("%s lookups answer again", self._what)
            self._failed_at = None
        now = self._clock()
        target = self._route(answer)
        for cache in self._caches:
            if cache is not target:
                cache.discard(key)
        target.put(key, answer, now)
        return answer
