"""Per-tenant serving state in memory, kept current by the change stream; no I/O here.

`ServingMemory` holds, per tenant, recently served users' rows and items' catalog facts in
bounded LRU maps, keyed by the caller's tenant. `invalidate(change)` drops what a commit
changed; `put_*` refuses a value read before a change of its key (`token()`); while the stream
is not connected (`live` false) nothing is served or kept. Under `memory_only()` a missing
answer raises `NotInMemory` (docs/serving.md, "Freshness and the read path")."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from magnetar.db.change_stream import Change

_MEMORY_ONLY: ContextVar[bool] = ContextVar("magnetar_memory_only", default=False)


class NotInMemory(Exception):
    """The request needs something memory does not hold: serve it the ordinary way. `fill`,
    when given, reads just what was missing into memory (blocking I/O: call it on a worker
    thread); the request may then run from memory again."""

    def __init__(self, fill: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.fill = fill


@contextmanager
def memory_only() -> Iterator[None]:
    token = _MEMORY_ONLY.set(True)
    try:
        yield
    finally:
        _MEMORY_ONLY.reset(token)


def in_memory_only() -> bool:
    return _MEMORY_ONLY.get()


_USERS, _ITEMS, _RANKINGS = "users", "items", "rankings"

# Marks "the catalog has no such item", kept like a fact.
ABSENT = object()


@dataclass
class MemoryStats:
    hits: int = 0
    misses: int = 0
    refused_fills: int = 0
    invalidations: int = 0
    ranked_hits: int = 0
    ranked_misses: int = 0


class _Tenant:
    __slots__ = ("items", "rankings", "users")

    def __init__(self) -> None:
        self.users: OrderedDict[str, Any] = OrderedDict()
        self.items: OrderedDict[str, Any] = OrderedDict()
        # A user's ranking made ahead (`magnetar.serving.ranked_ahead`), dropped with the user.
        self.rankings: OrderedDict[str, Any] = OrderedDict()


class ServingMemory:
    def __init__(
        self,
        *,
        max_users: int = 50_000,
        max_items: int = 100_000,
        max_rankings: int = 5_000,
        max_changes: int = 200_000,
    ) -> None:
        self._limits = {_USERS: max_users, _ITEMS: max_items, _RANKINGS: max_rankings}
        self._max_changes = max_changes
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()
        self._seq = 0
        # When each key last changed (bounded: a fill older than `_floor` is refused).
        self._changed: OrderedDict[Hashable, int] = OrderedDict()
        self._floor = 0
        self._live = False
        self.stats = MemoryStats()

    @property
    def live(self) -> bool:
        return self._live

    def set_live(self, live: bool) -> None:
        with self._lock:
            self._drop_all()
            self._live = live

    def token(self) -> int:
        return self._seq

    # -- reads -------------------------------------------------------------------------

    def user(self, tenant_id: str, user_id: str) -> Any | None:
        found = self._get(tenant_id, user_id, _USERS)
        if found is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return found

    def item(self, tenant_id: str, item_id: str) -> Any | None:
        """A catalog fact, `ABSENT` (known not to be in the catalog), or None (not held)."""
        return self._get(tenant_id, item_id, _ITEMS)

    def ranking(self, tenant_id: str, user_id: str) -> Any | None:
        """The user's ranking made ahead, or None; `ranked_hits`/`_misses` are counted by the
        caller, which also judges whether a held ranking is still current."""
        return self._get(tenant_id, user_id, _RANKINGS)

    def _get(self, tenant_id: str, key: str, kind: str) -> Any | None:
        tenant = self._tenants.get(tenant_id)
        entries = None if tenant is None else getattr(tenant, kind)
        found = None if entries is None else entries.get(key)
        if found is None:
            return None
        # It may have been dropped meanwhile by the stream's thread.
        with suppress(KeyError):
            entries.move_to_end(key)  # type: ignore[union-attr]
        return found

    # -- fills -------------------------------------------------------------------------

    def put_user(self, tenant_id: str, user_id: str, rows: Any, token: int) -> bool:
        """Keep the user's rows read at `token`; False when refused (a change since)."""
        return self._put(tenant_id, ("u", tenant_id, user_id), user_id, rows, token, _USERS)

    def put_item(self, tenant_id: str, item_id: str, fact: Any, token: int) -> None:
        self._put(tenant_id, ("i", tenant_id, item_id), item_id, fact, token, _ITEMS)

    def put_ranking(self, tenant_id: str, user_id: str, ranking: Any, token: int) -> None:
        """Keep a ranking made from what was current at `token`: refused, like a user's rows,
        when a change of the user (or the tenant) arrived since."""
        self._put(tenant_id, ("u", tenant_id, user_id), user_id, ranking, token, _RANKINGS)

    def _put(
        self, tenant_id: str, changed: Hashable, key: str, value: Any, token: int, kind: str
    ) -> bool:
        with self._lock:
            if (
                not self._live
                or token < self._floor
                or self._changed.get(changed, -1) > token
                or self._changed.get(("all", tenant_id), -1) > token
            ):
                self.stats.refused_fills += 1
                return False
            tenant = self._tenants.setdefault(tenant_id, _Tenant())
            entries = getattr(tenant, kind)
            limit = self._limits[kind]
            entries[key] = value
            entries.move_to_end(key)
            while len(entries) > limit:
                entries.popitem(last=False)
            return True

    # -- the change stream -------------------------------------------------------------

    def invalidate(self, change: Change) -> list[str]:
        """Drop what `change` names; the users whose rows were held (to be read again)."""
        held: list[str] = []
        with self._lock:
            self._seq += 1
            self.stats.invalidations += 1
            tenant = self._tenants.get(change.tenant_id)
            if change.everything:
                self._mark(("all", change.tenant_id))
                self._tenants.pop(change.tenant_id, None)
                return held
            for user_id in change.users:
                self._mark(("u", change.tenant_id, user_id))
                if tenant is not None:
                    if tenant.users.pop(user_id, None) is not None:
                        held.append(user_id)
                    tenant.rankings.pop(user_id, None)
            for item_id in change.items:
                self._mark(("i", change.tenant_id, item_id))
                if tenant is not None:
                    tenant.items.pop(item_id, None)
        return held

    def forget_items(self, tenant_id: str, item_ids: Sequence[str]) -> None:
        """Drop catalog facts now (this process's own catalog write), as a change would."""
        self.invalidate(Change(tenant_id, items=tuple(item_ids)))

    def forget_user(self, tenant_id: str, user_id: str) -> None:
        """Drop a user now (this process's own erasure), as a change would."""
        self.invalidate(Change(tenant_id, users=(user_id,)))

    def _mark(self, key: Hashable) -> None:
        self._changed[key] = self._seq
        self._changed.move_to_end(key)
        while len(self._changed) > self._max_changes:
            _, seq = self._changed.popitem(last=False)
            self._floor = max(self._floor, seq)

    def _drop_all(self) -> None:
        self._seq += 1
        self._floor = self._seq
        self._tenants.clear()
        self._changed.clear()

    # -- metrics -----------------------------------------------------------------------

    def sizes(self) -> dict[str, tuple[int, int, int]]:
        """Users, items and rankings held, per tenant."""
        return {
            t: (len(e.users), len(e.items), len(e.rankings)) for t, e in list(self._tenants.items())
        }
