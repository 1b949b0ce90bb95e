"""The shape of personalization state: keys, per-key deltas, and the read port over it.

`fold.fold_events` produces a `StateDelta`: for every signal, a mapping from a key to the
change to apply to that key, so the materializer writes each key once per batch (one
multi-row upsert per signal). Every key leads with `tenant_id`, like every row in Postgres.
The merge rules live next to the value types so the in-memory store and the SQL upserts have
one definition to agree with.

`StateReader` is the read port used for serving. It is deliberately narrow and set-oriented
(neighbours of many items in one call) so a PostgreSQL implementation answers a
recommendation in a handful of queries. Scores it returns are already decayed to `now_ms`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from magnetar.personalization.decay import DecayedScore


class UserKey(NamedTuple):
    tenant_id: str
    user_id: str


class UserItemKey(NamedTuple):
    tenant_id: str
    user_id: str
    item_id: str


class UserCategoryKey(NamedTuple):
    tenant_id: str
    user_id: str
    category: str


class ItemKey(NamedTuple):
    tenant_id: str
    item_id: str


class WindowItemKey(NamedTuple):
    """An item's popularity counter in one trending window."""

    tenant_id: str
    window: str
    item_id: str


class ItemPairKey(NamedTuple):
    """Directed co-visitation: how much `other_item_id` goes with `item_id`.

    Both directions are stored so "neighbours of X" is a range scan on (tenant_id, item_id).
    """

    tenant_id: str
    item_id: str
    other_item_id: str


@dataclass(frozen=True, slots=True)
class UserItemSignal:
    """A user's affinity to one item, and how many times they (net) bought it.

    `purchases` counts purchase events minus cancellations; an item counts as purchased while
    it is positive.
    """

    score: DecayedScore
    purchases: int
    last_at: int

    def merge(self, delta: UserItemSignal, half_life_ms: int) -> UserItemSignal:
        return UserItemSignal(
            self.score.merge(delta.score, half_life_ms),
            self.purchases + delta.purchases,
            max(self.last_at, delta.last_at),
        )


@dataclass(frozen=True, slots=True)
class UserActivity:
    """Counts for a user's profile: every event (of any type) and purchases among them."""

    events: int
    purchases: int
    first_seen: int
    last_seen: int

    def merge(self, delta: UserActivity) -> UserActivity:
        return UserActivity(
            self.events + delta.events,
            self.purchases + delta.purchases,
            min(self.first_seen, delta.first_seen),
            max(self.last_seen, delta.last_seen),
        )


@dataclass(frozen=True, slots=True)
class ItemCategories:
    """An item's categories as last seen on an event.

    Every item seen on an event gets an entry, so the entry also says "this item is known".
    The later observation wins, except that an observation without categories (the catalog
    join found nothing) never replaces one with categories. As SQL: update when
    `(cardinality(excluded.categories) > 0, excluded.as_of) >= (cardinality(categories) > 0,
    as_of)`.
    """

    categories: tuple[str, ...]
    as_of: int

    def precedence(self) -> tuple[bool, int]:
        return (bool(self.categories), self.as_of)

    def merge(self, delta: ItemCategories) -> ItemCategories:
        return delta if delta.precedence() >= self.precedence() else self


@dataclass(frozen=True, slots=True, order=True)
class RecentItem:
    """One entry of a user's recent-items list: an item's latest interaction in a session.

    Ordered by (occurred_at, event_id) so that ties at the same millisecond still have one
    order, whichever batch or replica computed it.
    """

    occurred_at: int
    event_id: str
    item_id: str
    session_id: str
    type: str


def merge_recent(
    existing: Iterable[RecentItem], delta: Iterable[RecentItem], limit: int
) -> tuple[RecentItem, ...]:
    """The union of two recent lists: one entry per (session, item), newest first, bounded.

    Entries are per session, not per item, because the fold reads them back as the session
    context of the next batch: an item seen in two interleaved sessions must still pair
    within each. Idempotent and order-insensitive, so a redelivered or reordered batch
    cannot corrupt it.
    """
    # The dataclass order, as plain tuples: comparing tuples is several times cheaper than
    # the generated __lt__, and this runs for every user of every batch.
    latest: dict[tuple[str, str], tuple[tuple[int, str, str, str, str], RecentItem]] = {}
    for entry in (*existing, *delta):
        key = (entry.session_id, entry.item_id)
        order = (entry.occurred_at, entry.event_id, entry.item_id, entry.session_id, entry.type)
        kept = latest.get(key)
        if kept is None or order > kept[0]:
            latest[key] = (order, entry)
    ranked = sorted(latest.values(), key=_first, reverse=True)
    return tuple(entry for _, entry in ranked[:limit])


def _first(
    pair: tuple[tuple[int, str, str, str, str], RecentItem],
) -> tuple[int, str, str, str, str]:
    return pair[0]


def distinct_items(entries: Iterable[RecentItem], limit: int) -> tuple[RecentItem, ...]:
    """Newest-first entries reduced to each item's newest one: what a reader shows."""
    seen: set[str] = set()
    found: list[RecentItem] = []
    for entry in entries:
        if entry.item_id not in seen and len(found) < limit:
            seen.add(entry.item_id)
            found.append(entry)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class StateDelta:
    """Everything one batch changes, keyed so each key is written once.

    `event_ids` are the (tenant, event id) pairs the delta counts: the materializer inserts
    them into the processed-event ledger in the same transaction.
    """

    event_ids: frozenset[tuple[str, str]]
    user_items: Mapping[UserItemKey, UserItemSignal]
    user_categories: Mapping[UserCategoryKey, DecayedScore]
    user_activity: Mapping[UserKey, UserActivity]
    recent_items: Mapping[UserKey, tuple[RecentItem, ...]]
    item_categories: Mapping[ItemKey, ItemCategories]
    item_popularity: Mapping[WindowItemKey, DecayedScore]
    covisitation: Mapping[ItemPairKey, DecayedScore]


class ScoredItem(NamedTuple):
    item_id: str
    score: float


class ScoredCategory(NamedTuple):
    category: str
    score: float


class StateReader(Protocol):
    """Read port over personalization state, for one tenant per call.

    Scores are decayed to `now_ms` with the tenant's half-lives; lists are best first and
    only hold positive scores (an affinity cancelled out to zero or below is no affinity).
    """

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        """The user's most recent distinct items, newest first (one entry per item)."""
        ...

    def user_item_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        """The items the user cares most about now."""
        ...

    def user_category_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredCategory]:
        """The categories the user cares most about now."""
        ...

    def purchased_items(self, tenant_id: str, user_id: str) -> frozenset[str]:
        """Items the user bought and did not cancel."""
        ...

    def user_activity(self, tenant_id: str, user_id: str) -> UserActivity | None:
        """The user's counts and first/last seen; None for a user with no state."""
        ...

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        """For each given item, the items most often co-visited with it (only items that have
        neighbours appear as keys)."""
        ...

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        """The most popular items in a trending window, over the whole catalog."""
        ...

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        """For each given category, its most popular items in a trending window."""
        ...

    def item_categories(
        self, tenant_id: str, item_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, ...]]:
        """Categories of the given items; an item is absent when it is unknown, and present
        with an empty tuple when it is known but uncategorised."""
        ...
