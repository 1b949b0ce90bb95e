"""A warm user's blended ranking kept ready, so a Recommend only filters and serializes.

A `Ranking` holds every candidate blended with no filter, best first, then the trending fill,
cut to `DEPTH`, with what `exclude_purchased` and `exclude_viewed` leave out and whether the
user is a cold start. Filtering it gives what ranking the request would; a request the cut
cannot answer is ranked per request. `RankedAhead.get` gives None once a ranking is older than
`max_age_ms`; a change of the user or tenant, or a reconnect, drops it with the user's rows,
and one made from rows read before such a change is refused. A ranking that used an empty
shared list is not kept; catalog facts are looked up per request (docs/serving.md, "Freshness
and the read path", "Ranked ahead")."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from magnetar.serving.memory import ServingMemory
from magnetar.serving.reasons import ServedItem

# How many ranked items a ranking keeps (~220 bytes each): enough for the common k (10-20)
# after a user's exclusions; a request it cannot answer is ranked per request.
DEPTH = 64
MAX_AGE_MS = 300_000  # docs/serving.md, "Rankings made ahead"


@dataclass(frozen=True, slots=True)
class Ranking:
    order: tuple[ServedItem, ...]
    # More candidates were ranked than `order` keeps.
    cut: bool
    purchased: frozenset[str]
    seen: frozenset[str]
    cold_start: bool


class SharedLists(Protocol):
    def recording(self) -> AbstractContextManager[list[tuple[Hashable, object]]]:
        """The shared lists served inside, by key and value."""
        ...


class TooShallow(Exception):
    """The ranking's cut does not reach k admitted, visible items: rank per request."""


def admitted(
    ranking: Ranking, exclude_ids: Iterable[str], exclude_purchased: bool, exclude_viewed: bool
) -> Iterator[ServedItem]:
    """The ranking's items the filters admit, best first; raises `TooShallow` at the end of
    a cut ranking (the items past the cut might have been admitted)."""
    excluded = set(exclude_ids)
    if exclude_purchased:
        excluded |= ranking.purchased
    if exclude_viewed:
        excluded |= ranking.seen
    if excluded:
        yield from (item for item in ranking.order if item.item_id not in excluded)
    else:
        yield from ranking.order
    if ranking.cut:
        raise TooShallow


@dataclass(frozen=True, slots=True)
class _Kept:
    ranking: Ranking
    made_at_ms: int


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class RankedAhead:
    """Rankings kept in `ServingMemory` (bounded per tenant, dropped with their user)."""

    def __init__(
        self,
        memory: ServingMemory,
        shared: SharedLists,
        *,
        max_age_ms: int = MAX_AGE_MS,
        clock_ms: Callable[[], int] = _monotonic_ms,
    ) -> None:
        self._memory = memory
        self._shared = shared
        self._max_age_ms = max_age_ms
        self._clock_ms = clock_ms

    def get(self, tenant_id: str, user_id: str) -> Ranking | None:
        memory = self._memory
        kept: _Kept | None = memory.ranking(tenant_id, user_id) if memory.live else None
        if kept is None or self._clock_ms() - kept.made_at_ms > self._max_age_ms:
            memory.stats.ranked_misses += 1
            return None
        memory.stats.ranked_hits += 1
        return kept.ranking

    def token(self) -> int:
        return self._memory.token()

    def recording(self) -> AbstractContextManager[list[tuple[Hashable, object]]]:
        return self._shared.recording()

    def keep(
        self,
        tenant_id: str,
        user_id: str,
        ranking: Ranking,
        shared: Sequence[tuple[Hashable, object]],
        token: int,
    ) -> None:
        if not all(value for _, value in shared):
            return  # it would hide the list's first entries (see the module)
        kept = _Kept(ranking, self._clock_ms())
        self._memory.put_ranking(tenant_id, user_id, kept, token)
