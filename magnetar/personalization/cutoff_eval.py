"""The cutoff protocol of `magnetar eval --through-platform`, and its offline twin. Pure.

Protocol (docs/quality.md, "Through the platform"): the tenant's state holds every event
before the cutoff; every customer who bought before the cutoff and again on or after it is
asked for recommendations at the cutoff; a hit at K is any item of the customer's first
purchase invoice on or after the cutoff in the top K. The baseline ranks items by their
purchases before the cutoff.

"At the cutoff" is the tenant's clock after importing up to the cutoff: the newest event
time before it (`clock_at`, docs/serving.md "The tenant's clock"). The offline twin
(`offline_rankings`) replays the same events through the same fold into the in-memory
state, asks the same core at the same instant, and ranks as the gateway does
(`magnetar.serving.personalization`: blend with the tenant's weights, top K).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from magnetar.personalization import records
from magnetar.personalization.evaluation import HitRates
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.recommend import RecommendRequest, blend, gather_candidates
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import TenantPersonalization
from magnetar.personalization.state import UserKey


@dataclass(frozen=True, slots=True)
class CutoffQuery:
    """A returning customer and the items of their first purchase invoice from the cutoff."""

    user_id: str
    items: frozenset[str]


def cutoff_queries(
    events: Iterable[EnrichedEvent], cutoff_ms: int, is_customer: Callable[[str], bool]
) -> list[CutoffQuery]:
    """Every customer with a purchase before the cutoff and a purchase invoice (a session)
    on or after it, with that invoice's items; in order of user id."""
    bought_before: set[str] = set()
    # user -> (first line's (occurred_at, event_id), invoice) of the first invoice after.
    first_after: dict[str, tuple[tuple[int, str], str]] = {}
    invoices: dict[tuple[str, str], set[str]] = {}
    for event in events:
        if event.type != records.PURCHASE or not is_customer(event.user_id):
            continue
        if event.occurred_at < cutoff_ms:
            bought_before.add(event.user_id)
            continue
        invoices.setdefault((event.user_id, event.session_id), set()).add(event.item_id)
        key = (event.occurred_at, event.event_id)
        found = first_after.get(event.user_id)
        if found is None or key < found[0]:
            first_after[event.user_id] = (key, event.session_id)
    return [
        CutoffQuery(user, frozenset(invoices[(user, invoice)]))
        for user, (_, invoice) in sorted(first_after.items())
        if user in bought_before
    ]


def most_popular_before(events: Iterable[EnrichedEvent], cutoff_ms: int, k: int) -> list[str]:
    """The `k` items most purchased before the cutoff (ties by id)."""
    counts = Counter(
        e.item_id for e in events if e.type == records.PURCHASE and e.occurred_at < cutoff_ms
    )
    return [item for item, _ in heapq.nsmallest(k, counts.items(), key=lambda p: (-p[1], p[0]))]


def clock_at(events_before: Iterable[EnrichedEvent]) -> int:
    """The tenant's clock once these events are counted: the newest of them."""
    return max(e.occurred_at for e in events_before)


def state_of(
    events_before: Sequence[EnrichedEvent], settings: TenantPersonalization, batch: int = 5000
) -> MemoryState:
    """The in-memory state after folding the events (in (occurred_at, event_id) order) in
    batches with the stored recent items as context, as the pipeline's commit does."""
    state = MemoryState(settings.signals)
    ordered = sorted(events_before, key=lambda e: (e.occurred_at, e.event_id))
    for start in range(0, len(ordered), batch):
        part = ordered[start : start + batch]
        users = sorted({UserKey(e.tenant_id, e.user_id) for e in part})
        state.apply(fold_events(part, settings.signals, state.recent_for(users)))
    return state


def offline_rankings(
    state: MemoryState,
    queries: Sequence[CutoffQuery],
    settings: TenantPersonalization,
    tenant_id: str,
    now_ms: int,
    k: int,
) -> dict[str, list[str]]:
    """Each customer's top `k` item ids as the gateway would rank them at `now_ms`."""
    ranked: dict[str, list[str]] = {}
    for query in queries:
        request = RecommendRequest(tenant_id, query.user_id, k=k)
        pool = gather_candidates(state, request, settings, now_ms)
        ranked[query.user_id] = [r.item_id for r in blend(pool, settings.recommend.blend, k)]
    return ranked


def hit_rates(
    queries: Sequence[CutoffQuery],
    ranking: Callable[[CutoffQuery, int], Sequence[str]],
    ks: Sequence[int],
) -> HitRates:
    """Hits at each K, `ranking(query, k)` giving the top `k` for the query."""
    hits = dict.fromkeys(ks, 0)
    for query in queries:
        for k in ks:
            if not query.items.isdisjoint(ranking(query, k)[:k]):
                hits[k] += 1
    return HitRates(len(queries), hits)


def from_lists(lists: Mapping[str, Sequence[str]]) -> Callable[[CutoffQuery, int], Sequence[str]]:
    def ranking(query: CutoffQuery, k: int) -> Sequence[str]:
        return lists.get(query.user_id, ())

    return ranking
