"""A synthetic, deterministic-by-seed stream of interaction events with a realistic shape.

Zipf item popularity; users unevenly active, returning in sessions that mostly browse a few
favourite categories; each session a funnel (view, click, cart, purchase or removal); repeat
purchases; some anonymous visitors; and, on purpose, client retries (same event id) and late
events. The same seed and settings give the same events in the same order, ids included."""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from magnetar.personalization import records
from magnetar.personalization.decay import MINUTE_MS
from magnetar.personalization.records import EnrichedEvent

SECOND_MS = 1000


@dataclass(frozen=True, slots=True)
class Funnel:
    """Chances of moving one step down the funnel, given the previous step."""

    click: float = 0.35
    add_to_cart: float = 0.3
    purchase: float = 0.6
    # Given a cart that is not bought: the chance it is explicitly removed.
    remove: float = 0.3


@dataclass(frozen=True, slots=True)
class GeneratorSettings:
    tenant_id: str = "demo"
    users: int = 1_000
    items: int = 2_000
    categories: int = 20
    zipf_exponent: float = 1.1
    # How unevenly active users are (Zipf exponent over users; 0 = all alike).
    user_activity_exponent: float = 0.7
    favourite_categories: int = 3
    # Chance that an item viewed in a session comes from one of the user's favourites.
    category_loyalty: float = 0.8
    mean_items_per_session: float = 5.0
    # Chance that a session of a user with purchases starts by re-buying one of them.
    repeat_purchase: float = 0.25
    anonymous_share: float = 0.1
    duplicate_share: float = 0.02
    late_share: float = 0.03
    late_max_ms: int = 10 * MINUTE_MS
    start_ms: int = 1_700_000_000_000
    # Pace of simulated time: on average this many events per simulated second.
    events_per_second: float = 20.0
    funnel: Funnel = field(default_factory=Funnel)

    def __post_init__(self) -> None:
        if min(self.users, self.items, self.categories) < 1:
            raise ValueError("users, items and categories must be at least 1")
        shares = (self.anonymous_share, self.duplicate_share, self.late_share)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ValueError("shares must be between 0 and 1")
        if self.events_per_second <= 0 or self.mean_items_per_session < 1:
            raise ValueError("events_per_second must be > 0 and mean_items_per_session >= 1")


def category_name(index: int) -> str:
    return f"category-{index:02d}"


def item_name(index: int) -> str:
    return f"item-{index:05d}"


@dataclass(frozen=True, slots=True)
class _Item:
    item_id: str
    categories: tuple[str, ...]
    price: float


class _Catalog:
    def __init__(self, settings: GeneratorSettings, rng: random.Random) -> None:
        ranks = list(range(1, settings.items + 1))
        rng.shuffle(ranks)
        self.items: list[_Item] = []
        by_category: dict[int, list[tuple[int, float]]] = {}
        for index, rank in enumerate(ranks):
            primary = rng.randrange(settings.categories)
            cats = [primary]
            if settings.categories > 1 and rng.random() < 0.15:
                cats.append(
                    (primary + 1 + rng.randrange(settings.categories - 1)) % settings.categories
                )
            price = round(rng.lognormvariate(2.5, 0.8), 2)
            self.items.append(_Item(item_name(index), tuple(category_name(c) for c in cats), price))
            weight = 1.0 / rank**settings.zipf_exponent
            for category in cats:
                by_category.setdefault(category, []).append((index, weight))
        # Cumulative weights per category and overall, for bisect sampling.
        self._by_category = {
            category: ([i for i, _ in members], list(itertools.accumulate(w for _, w in members)))
            for category, members in by_category.items()
        }
        weights = [1.0 / rank**settings.zipf_exponent for rank in ranks]
        self._all = (list(range(len(ranks))), list(itertools.accumulate(weights)))
        self.categories = sorted(by_category)

    def pick(self, rng: random.Random, category: int | None) -> _Item:
        members = None if category is None else self._by_category.get(category)
        indices, cumulative = members or self._all
        position = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        return self.items[indices[min(position, len(indices) - 1)]]


@dataclass
class _User:
    user_id: str
    favourites: tuple[int, ...]
    bought: list[_Item] = field(default_factory=list)


def generate(
    settings: GeneratorSettings | None = None, seed: int = 0, max_events: int | None = None
) -> Iterator[EnrichedEvent]:
    """Events in delivery order (duplicates and late arrivals included); endless when
    `max_events` is None. Each yielded record, duplicates included, counts toward
    `max_events`."""
    settings = settings or GeneratorSettings()
    rng = random.Random(seed)
    catalog = _Catalog(settings, rng)
    users = [
        _User(
            f"user-{index:06d}",
            tuple(
                rng.sample(
                    catalog.categories, min(settings.favourite_categories, len(catalog.categories))
                )
            ),
        )
        for index in range(settings.users)
    ]
    user_weights = list(
        itertools.accumulate(
            1.0 / (rank + 1) ** settings.user_activity_exponent for rank in range(settings.users)
        )
    )
    # Delivery queue of (deliver_at, sequence, event): a late or repeated copy is delivered
    # after events that happened later, exactly like a slow or retrying client.
    pending: list[tuple[int, int, EnrichedEvent]] = []
    sequence = itertools.count()
    clock = settings.start_ms
    emitted = 0
    sessions = itertools.count()
    mean_session_gap_ms = 1000.0 * _mean_events_per_session(settings) / settings.events_per_second

    while max_events is None or emitted < max_events:
        clock += max(1, round(rng.expovariate(1.0 / mean_session_gap_ms)))
        while pending and pending[0][0] <= clock:
            _, _, event = heapq.heappop(pending)
            yield event
            emitted += 1
            if max_events is not None and emitted >= max_events:
                return
        for event in _session(settings, rng, catalog, users, user_weights, next(sessions), clock):
            deliver_at = event.occurred_at
            if rng.random() < settings.late_share:
                deliver_at += rng.randint(SECOND_MS, max(SECOND_MS, settings.late_max_ms))
            heapq.heappush(pending, (deliver_at, next(sequence), event))
            if rng.random() < settings.duplicate_share:
                retry_at = deliver_at + rng.randint(0, 30 * SECOND_MS)
                heapq.heappush(pending, (retry_at, next(sequence), event))


def _mean_events_per_session(settings: GeneratorSettings) -> float:
    funnel = settings.funnel
    per_item = 1 + funnel.click * (
        1 + funnel.add_to_cart * (1 + funnel.purchase + (1 - funnel.purchase) * funnel.remove)
    )
    return settings.mean_items_per_session * per_item


def _session(
    settings: GeneratorSettings,
    rng: random.Random,
    catalog: _Catalog,
    users: list[_User],
    user_weights: list[float],
    number: int,
    start_ms: int,
) -> Iterator[EnrichedEvent]:
    session_id = f"session-{number:08d}"
    anonymous = rng.random() < settings.anonymous_share
    user = (
        _User(f"anon-{number:08d}", tuple(rng.sample(catalog.categories, 1)))
        if anonymous
        else users[bisect.bisect_right(user_weights, rng.random() * user_weights[-1]) % len(users)]
    )
    at = start_ms
    length = 1 + int(rng.expovariate(1.0 / max(settings.mean_items_per_session - 1, 1e-9)))
    chosen: list[tuple[_Item, bool]] = []
    if user.bought and rng.random() < settings.repeat_purchase:
        chosen.append((rng.choice(user.bought), True))
    for _ in range(length):
        loyal = rng.random() < settings.category_loyalty
        category = rng.choice(user.favourites) if loyal else None
        chosen.append((catalog.pick(rng, category), False))

    funnel = settings.funnel
    for item, rebuy in chosen:
        steps = [records.VIEW]
        if rebuy:
            steps += [records.ADD_TO_CART, records.PURCHASE]
        elif rng.random() < funnel.click:
            steps.append(records.CLICK)
            if rng.random() < funnel.add_to_cart:
                steps.append(records.ADD_TO_CART)
                if rng.random() < funnel.purchase:
                    steps.append(records.PURCHASE)
                elif rng.random() < funnel.remove:
                    steps.append(records.REMOVE_FROM_CART)
        quantity = 1 + int(rng.expovariate(1.5))
        for step in steps:
            at += max(SECOND_MS, round(rng.expovariate(1.0 / (20 * SECOND_MS))))
            in_cart = step in (records.ADD_TO_CART, records.PURCHASE, records.REMOVE_FROM_CART)
            yield EnrichedEvent(
                event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                tenant_id=settings.tenant_id,
                user_id=user.user_id,
                session_id=session_id,
                type=step,
                item_id=item.item_id,
                occurred_at=at,
                # As on the wire: the unit price for cart and purchase events, 0 otherwise.
                value=item.price if step in (records.ADD_TO_CART, records.PURCHASE) else 0.0,
                quantity=quantity if in_cart else 1,
                categories=item.categories,
                price=item.price,
            )
        if records.PURCHASE in steps and not anonymous and item not in user.bought:
            user.bought.append(item)
            del user.bought[:-20]
