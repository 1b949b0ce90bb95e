"""Folding a batch of enriched events into one `StateDelta`.

The fold is a pure function of the batch, the tenant's signal settings and the users' stored
recent items. It is deterministic and independent of arrival order: duplicates of an event id
count once, and events are processed in (occurred_at, event_id) order, so any permutation of
a batch folds to the same delta.

Co-visitation pairs an event with at most `pair_window` distinct earlier items of the same
session (earlier in the batch, or stored in the user's recent items when the materializer
passes them), which bounds the rows one event can touch. An event that arrives after later
events of its session were already folded pairs only with the items before it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

from magnetar.personalization import records
from magnetar.personalization.decay import DecayedScore
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import (
    ItemCategories,
    ItemKey,
    ItemPairKey,
    RecentItem,
    StateDelta,
    UserActivity,
    UserCategoryKey,
    UserItemKey,
    UserItemSignal,
    UserKey,
    WindowItemKey,
    merge_recent,
)

# How far back through a session the pairing walk may look to find `pair_window` distinct
# items, in multiples of the window: a user bouncing between two items must not turn the
# walk into a scan of the whole session.
_WALK_FACTOR = 4


# A decayed sum being built up during one fold: [value, as_of]. Mutable lists in plain
# dicts keyed by plain tuples, because a batch makes millions of these updates and the typed
# keys and immutable scores are only worth building once per key, at the end.
_Cell = list[float]


def _accumulate(
    cells: dict[tuple[str, ...], _Cell], key: tuple[str, ...], amount: float, at: int, h: int
) -> None:
    cell = cells.get(key)
    if cell is None:
        cells[key] = [amount, at]
    elif at >= cell[1]:
        cell[0] = cell[0] * math.exp2((cell[1] - at) / h) + amount
        cell[1] = at
    else:
        cell[0] += amount * math.exp2((at - cell[1]) / h)


def _score(cell: _Cell) -> DecayedScore:
    return DecayedScore(cell[0], int(cell[1]))


_SessionEntry = tuple[tuple[int, str], str, float]  # ((occurred_at, event_id), item_id, weight)


def unique_in_fold_order(events: Iterable[EnrichedEvent]) -> list[EnrichedEvent]:
    """The batch without repeated (tenant, event id), in the order the fold processes it.

    When two copies of an id differ (a client bug), the copy that sorts first on its content
    is kept, so the choice does not depend on which copy arrived first.
    """
    survivors: dict[tuple[str, str], EnrichedEvent] = {}
    for event in events:
        key = (event.tenant_id, event.event_id)
        kept = survivors.get(key)
        if kept is None or _content_key(event) < _content_key(kept):
            survivors[key] = event
    return sorted(survivors.values(), key=lambda e: (e.occurred_at, e.event_id, e.tenant_id))


def _content_key(event: EnrichedEvent) -> tuple[object, ...]:
    return (
        event.occurred_at,
        event.user_id,
        event.session_id,
        event.type,
        event.item_id,
        event.value,
        event.quantity,
        event.categories,
        event.price,
    )


class _SessionPairs:
    """Each session's positively weighted items in time order, to find an event's partners."""

    def __init__(
        self, settings: SignalSettings, recent: Mapping[UserKey, Sequence[RecentItem]]
    ) -> None:
        self._settings = settings
        self._recent = recent
        self._sessions: dict[tuple[str, str, str], list[_SessionEntry]] = {}

    def partners(self, event: EnrichedEvent, weight: float) -> list[tuple[str, float]]:
        """The event's distinct earlier items in its session (item, weight), then records it."""
        entries = self._session(event.tenant_id, event.user_id, event.session_id)
        order = (event.occurred_at, event.event_id)
        position = bisect.bisect_left(entries, (order,))
        found: dict[str, float] = {}
        window = self._settings.pair_window
        lowest = max(0, position - _WALK_FACTOR * window)
        for index in range(position - 1, lowest - 1, -1):
            if len(found) >= window:
                break
            _, item_id, item_weight = entries[index]
            if item_id != event.item_id and item_id not in found:
                found[item_id] = item_weight
        entries.insert(position, (order, event.item_id, weight))
        return list(found.items())

    def _session(self, tenant_id: str, user_id: str, session_id: str) -> list[_SessionEntry]:
        """The session's entries in time order, starting from what the state stored: only
        this session's stored entries are read, the first time the batch meets it."""
        key = (tenant_id, user_id, session_id)
        entries = self._sessions.get(key)
        if entries is None:
            weight_of = self._settings.weights.of
            entries = [
                ((entry.occurred_at, entry.event_id), entry.item_id, weight)
                for entry in self._recent.get(UserKey(tenant_id, user_id), ())
                if entry.session_id == session_id and (weight := weight_of(entry.type)) > 0
            ]
            entries.sort()
            self._sessions[key] = entries
        return entries


def fold_events(
    events: Iterable[EnrichedEvent],
    settings: SignalSettings,
    recent: Mapping[UserKey, Sequence[RecentItem]] | None = None,
    not_after_ms: int | None = None,
) -> StateDelta:
    """Fold a batch into per-key deltas.

    `recent` holds the stored recent items of the batch's users, so sessions spanning batches
    still pair across the boundary; without it, pairs stay within the batch. `not_after_ms`
    clamps event times (e.g. to the materializer's clock plus allowed skew): a timestamp far
    in the future would otherwise move a score's instant ahead and make every later
    contribution look decayed.
    """
    weights = settings.weights
    affinity_h = settings.affinity_half_life_ms
    covisit_h = settings.covisitation_half_life_ms
    pairs = _SessionPairs(settings, recent or {})

    event_ids: set[tuple[str, str]] = set()
    user_items: dict[tuple[str, ...], _Cell] = {}
    user_purchases: dict[tuple[str, ...], list[int]] = {}
    user_categories: dict[tuple[str, ...], _Cell] = {}
    activity: dict[UserKey, list[int]] = {}
    recent_delta: dict[UserKey, list[RecentItem]] = {}
    item_categories: dict[ItemKey, ItemCategories] = {}
    popularity: dict[tuple[str, ...], _Cell] = {}
    covisitation: dict[tuple[str, ...], _Cell] = {}

    for event in unique_in_fold_order(events):
        tenant, user_id, item_id = event.tenant_id, event.user_id, event.item_id
        at = event.occurred_at if not_after_ms is None else min(event.occurred_at, not_after_ms)
        event_ids.add((tenant, event.event_id))
        weight = weights.of(event.type)
        is_purchase = event.type == records.PURCHASE
        user = UserKey(tenant, user_id)

        counts = activity.get(user)
        if counts is None:
            activity[user] = [1, int(is_purchase), at, at]
        else:
            counts[0] += 1
            counts[1] += int(is_purchase)
            counts[2] = min(counts[2], at)
            counts[3] = max(counts[3], at)

        if not item_id:
            # Events about no item (a search) only tell that the user was active.
            continue
        observed = ItemCategories(event.categories, at)
        known = item_categories.get(ItemKey(tenant, item_id))
        item_categories[ItemKey(tenant, item_id)] = (
            observed if known is None else known.merge(observed)
        )

        if weight == 0.0:
            continue

        user_item = (tenant, user_id, item_id)
        _accumulate(user_items, user_item, weight, at, affinity_h)
        bought = user_purchases.setdefault(user_item, [0, at])
        bought[0] += 1 if is_purchase else -1 if event.type == records.CANCEL else 0
        bought[1] = max(bought[1], at)
        for category in event.categories:
            _accumulate(user_categories, (tenant, user_id, category), weight, at, affinity_h)

        if weight < 0:
            continue

        recent_delta.setdefault(user, []).append(
            RecentItem(at, event.event_id, item_id, event.session_id, event.type)
        )
        for window, half_life in settings.trending_windows:
            _accumulate(popularity, (tenant, window, item_id), weight, at, half_life)
        for partner, partner_weight in pairs.partners(event, weight):
            strength = min(weight, partner_weight)
            _accumulate(covisitation, (tenant, item_id, partner), strength, at, covisit_h)
            _accumulate(covisitation, (tenant, partner, item_id), strength, at, covisit_h)

    limit = settings.recent_items_limit
    return StateDelta(
        event_ids=frozenset(event_ids),
        user_items={
            UserItemKey(*key): UserItemSignal(_score(cell), *user_purchases[key])
            for key, cell in user_items.items()
        },
        user_categories={UserCategoryKey(*k): _score(c) for k, c in user_categories.items()},
        user_activity={key: UserActivity(*counts) for key, counts in activity.items()},
        recent_items={key: merge_recent((), items, limit) for key, items in recent_delta.items()},
        item_categories=item_categories,
        item_popularity={WindowItemKey(*k): _score(c) for k, c in popularity.items()},
        covisitation={ItemPairKey(*k): _score(c) for k, c in covisitation.items()},
    )
