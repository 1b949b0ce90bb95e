"""Reads every user of a tenant shares, served from memory and refreshed in the background.

Trending lists and an item's co-visitation neighbours are kept per tenant. An entry younger
than its `ttl_ms` is served as is; an older one is served and refreshed once in the
background; one older than `max_stale_ms` is read again before answering (in memory-only
mode it raises `NotInMemory` instead). Refreshes run one at a time, at most `max_per_second`.
Empty lists are not kept. A change naming everything of a tenant (`changed`) drops its lists,
and a read that started before the drop does not put its list back. Everything else passes
through to the wrapped state unchanged (docs/serving.md, "Freshness and the read path")."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from magnetar.db.change_stream import Change
from magnetar.personalization.state import (
    RecentItem,
    ScoredCategory,
    ScoredItem,
    UserActivity,
)
from magnetar.serving.memory import NotInMemory, in_memory_only
from magnetar.serving.personalization import CatalogFact, ServingState

log = logging.getLogger(__name__)

Ranked = tuple[ScoredItem, ...]
Refresh = Callable[[Hashable, Callable[[], object]], None]
# The lists a computation used, by key (see `SharedReadsCache.recording`).
Used = list[tuple[Hashable, object]]

_RECORDING: ContextVar[Used | None] = ContextVar("magnetar_shared_reads_used", default=None)


class _Entries:
    """A bounded map of ranked lists with the time each was read (least recently used out).

    Keys are tuples whose second element is the tenant. `drop_tenant` removes a tenant's
    lists and bumps its generation; `put` refuses a list read under an older generation."""

    def __init__(self, max_entries: int, clock_ms: Callable[[], int]) -> None:
        self._max_entries = max_entries
        self._clock_ms = clock_ms
        self._entries: OrderedDict[Hashable, tuple[int, Ranked]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()

    def generation(self, tenant_id: str) -> int:
        with self._lock:
            return self._generations.get(tenant_id, 0)

    def drop_tenant(self, tenant_id: str) -> None:
        with self._lock:
            self._generations[tenant_id] = self._generations.get(tenant_id, 0) + 1
            for key in [k for k in self._entries if _tenant_of(k) == tenant_id]:
                del self._entries[key]

    def get(self, key: Hashable) -> tuple[Ranked, int] | None:
        """The list and its age in ms."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[1], self._clock_ms() - found[0]

    def put(self, key: Hashable, value: Ranked, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self._generations.get(_tenant_of(key), 0):
                return  # read before the tenant's lists were dropped
            if not value:
                self._entries.pop(key, None)
                return
            self._entries[key] = (self._clock_ms(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


def _tenant_of(key: Hashable) -> str:
    return str(key[1]) if isinstance(key, tuple) and len(key) > 1 else ""


class BackgroundRefresh:
    """Runs refreshes one at a time on a daemon thread, each key at most once in the queue,
    at most `max_per_second` of them.

    One thread on purpose: refreshes are the cache's own load on PostgreSQL, kept to one
    query at a time and a bounded rate whatever the request rate. A failed refresh is logged
    and dropped: the stale entry stays until `max_stale_ms`, when a request reads it again
    itself (and sees the failure).
    """

    def __init__(
        self,
        max_queued: int = 10_000,
        max_per_second: float = 20.0,
        *,
        name: str = "shared-reads-refresh",
    ) -> None:
        self._name = name
        self._max_queued = max_queued
        self._gap_s = 1.0 / max_per_second
        self._queued: set[Hashable] = set()
        self._jobs: queue.SimpleQueue[tuple[Hashable, Callable[[], object]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, key: Hashable, job: Callable[[], object]) -> None:
        with self._lock:
            if key in self._queued or len(self._queued) >= self._max_queued:
                return
            self._queued.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._jobs.put((key, job))

    def _run(self) -> None:
        while True:
            key, job = self._jobs.get()
            started = time.monotonic()
            try:
                job()
            except Exception:
                log.warning(
                    "refreshing %r failed; the stale entry stays for now", key, exc_info=True
                )
            finally:
                with self._lock:
                    self._queued.discard(key)
            time.sleep(max(0.0, started + self._gap_s - time.monotonic()))


@dataclass(frozen=True, slots=True)
class Freshness:
    """How old a kind of list may be: served as is, then served while refreshed."""

    ttl_ms: int
    max_stale_ms: int


TRENDING = Freshness(ttl_ms=30_000, max_stale_ms=300_000)
NEIGHBOURS = Freshness(ttl_ms=600_000, max_stale_ms=3_600_000)


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class SharedReadsCache:
    """A `ServingState` serving trending lists and neighbours from memory (see the module)."""

    def __init__(
        self,
        state: ServingState,
        *,
        trending: Freshness = TRENDING,
        neighbours: Freshness = NEIGHBOURS,
        max_entries: int = 20_000,
        clock_ms: Callable[[], int] = _monotonic_ms,
        refresh: Refresh | None = None,
    ) -> None:
        self._state = state
        self._trending = trending
        self._neighbours = neighbours
        self._entries = _Entries(max_entries, clock_ms)
        self._refresh = refresh or BackgroundRefresh()

    def _lookup(
        self,
        tenant_id: str,
        keys: Mapping[str, Hashable],
        fetch: Callable[[Sequence[str]], Mapping[str, Ranked]],
        freshness: Freshness,
    ) -> dict[str, Ranked]:
        """Lists by name: fresh or stale ones from memory (stale ones refreshed in the
        background), missing or too old ones fetched now, in one call."""
        generation = self._entries.generation(tenant_id)
        found: dict[str, Ranked] = {}
        missing: list[str] = []
        stale: list[str] = []
        for name, key in keys.items():
            entry = self._entries.get(key)
            if entry is None or entry[1] > freshness.max_stale_ms:
                missing.append(name)
                continue
            found[name] = entry[0]
            if entry[1] > freshness.ttl_ms:
                stale.append(name)
        if missing:

            def fill() -> dict[str, Ranked]:
                fetched = fetch(missing)
                for name in missing:
                    self._entries.put(keys[name], fetched.get(name, ()), generation)
                return {name: fetched.get(name, ()) for name in missing}

            if in_memory_only():
                raise NotInMemory(fill)
            found.update(fill())
        for name in stale:

            def again(name: str = name) -> None:
                read_under = self._entries.generation(tenant_id)
                self._entries.put(keys[name], fetch([name]).get(name, ()), read_under)

            self._refresh(keys[name], again)
        used = _RECORDING.get()
        if used is not None:
            used.extend((key, found[name]) for name, key in keys.items())
        return found

    @staticmethod
    @contextmanager
    def recording() -> Iterator[Used]:
        """The lists served inside, by key (empty ones too: those are not kept)."""
        used: Used = []
        token = _RECORDING.set(used)
        try:
            yield used
        finally:
            _RECORDING.reset(token)

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        # A background refresh ranks as of the request that found the entry stale: decay
        # scales every score of a list alike, so the order is the same as of any later time.
        def fetch(_: Sequence[str]) -> Mapping[str, Ranked]:
            return {"": tuple(self._state.trending(tenant_id, window, now_ms, limit))}

        key = ("trending", tenant_id, window, limit)
        return self._lookup(tenant_id, {"": key}, fetch, self._trending)[""]

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        def fetch(wanted: Sequence[str]) -> Mapping[str, Ranked]:
            found = self._state.trending_in_categories(
                tenant_id, window, wanted, now_ms, limit_per_category
            )
            return {category: tuple(items) for category, items in found.items()}

        keys = {
            category: ("in_category", tenant_id, window, category, limit_per_category)
            for category in dict.fromkeys(categories)
        }
        return self._lookup(tenant_id, keys, fetch, self._trending)

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        def fetch(wanted: Sequence[str]) -> Mapping[str, Ranked]:
            found = self._state.neighbours(tenant_id, wanted, now_ms, limit_per_item)
            return {item_id: tuple(items) for item_id, items in found.items()}

        keys = {
            item_id: ("neighbours", tenant_id, item_id, limit_per_item)
            for item_id in dict.fromkeys(item_ids)
        }
        # Only items that have neighbours are keys, as the port says.
        found = self._lookup(tenant_id, keys, fetch, self._neighbours)
        return {item: ranked for item, ranked in found.items() if ranked}

    # -- the change stream (`gateway.serving_memory.ChangeFollower`) ------------------------

    def changed(self, change: Change) -> None:
        """Everything of a tenant changed (a rebuild's switch): its lists go. Changes that
        name users or items leave them: shared lists lag on purpose (the module doc)."""
        if change.everything:
            self._entries.drop_tenant(change.tenant_id)

    def set_live(self, live: bool) -> None:
        """Nothing: how long a list is kept does not depend on hearing the stream."""

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

    def item_categories(
        self, tenant_id: str, item_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, ...]]:
        return self._state.item_categories(tenant_id, item_ids)
