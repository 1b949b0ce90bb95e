"""A warm user's blended ranking kept ready, so a Recommend only filters and serializes.

What a `Ranking` holds: every candidate of the user's four strategies blended, best first,
then the trending fill (`blend` asked for all of them) — the order a request without context
items or a category filter would rank — cut to `DEPTH` items, plus what `exclude_purchased`
and `exclude_viewed` leave out for that user and whether the user is a cold start.

Why filtering it gives the per-request answer: a candidate's blended score depends only on
its own strategy scores (each strategy is normalised before any filter), so leaving items
out of the blend leaves the others' order unchanged, and the trending fill skips exactly
the items the filters skip. The answer is the first `k` items of the order that the
request's filters admit and the catalog does not hide — which is what ranking per request
gives. A request the cut cannot answer (filters and the catalog leave fewer than `k` of the
`DEPTH`, and more candidates existed) is ranked per request.

When it is dropped (`RankedAhead.get` gives None and the caller ranks again):
- the user changed, or all of the tenant, or the change stream reconnected: dropped in
  `ServingMemory.invalidate` with the user's rows, under the same lock, so a ranking is never
  older than the rows it was made from; one made from rows read before such a change is
  refused (`ServingMemory.put_ranking` with the token taken before ranking);
- it is older than `max_age_ms` (5 minutes): the shared lists it used (trending, trending
  in a category, an item's neighbours) are then looked up again, which is what schedules
  their background refresh. A refreshed list does not drop the rankings made from the one
  before (docs/serving.md, "Ranked ahead", says why and what it costs).
A ranking that used an empty shared list is not kept (`SharedReadsCache` keeps no empty
list, so that a new tenant's or item's first entries show at once; a kept ranking would
hide them). Catalog facts are not in it: visibility and titles are looked up per request.
"""

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
