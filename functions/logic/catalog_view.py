"""The compacted catalog topic as an in-memory table, and the join of events with it.

``persistent://<tenant>/catalog/items`` is keyed by item_id; compaction keeps the latest value
per key, and a message with an empty value (a tombstone) deletes the item. `enrich` reads the
topic from the earliest position at start (rebuilding the whole table) and then applies
updates as they arrive, so a catalog change shows up in enrichment within the reader's
latency. Per key the topic keeps publish order, so applying messages in arrival order leaves
each item as its last write; nothing here needs versions.

The message key is authoritative (it is what compaction goes by): an item stored under key
``k`` has item_id ``k`` whatever its payload says.

Concurrency: a reader thread may apply updates while ``process`` joins. Every operation is a
single dict operation on immutable values, atomic under the GIL, so a join sees an item
either before or after an update, never half of one.

Memory: the view holds the whole catalog (it is a table, not a cache): about 220 bytes plus
the title and categories per item (measured), so a million items need a few hundred MB. An event whose
item is not in the view is joined with empty fields — not an error: the item may be new and
its catalog write still on its way, and an interaction without catalog data is still signal.

Sanitizing: the topic is written by more than the gateway (tools, replays), and categories
flow on into PostgreSQL state. A category with a control character (NUL cannot be stored in
text or jsonb and would fail every commit of its batch) or an empty one is dropped; a price
that is not a finite, non-negative number becomes "not given".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from magnetar.event_contract import CONTROL


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """What enrichment takes from the catalog; ``price`` is None when the tenant gave none."""

    item_id: str
    title: str = ""
    categories: tuple[str, ...] = ()
    price: float | None = None


@dataclass(frozen=True, slots=True)
class ItemSnapshot:
    """The item as the view knew it at join time (``magnetar.v1.ItemSnapshot``)."""

    found: bool
    title: str = ""
    categories: tuple[str, ...] = ()
    price: float | None = None


UNKNOWN_ITEM = ItemSnapshot(found=False)


@dataclass(slots=True)
class CatalogStats:
    upserts: int = 0
    deletes: int = 0
    joins: int = 0
    misses: int = 0


class CatalogView:
    """Latest catalog item per item_id, updated from the compacted topic."""

    def __init__(self) -> None:
        self._items: dict[str, CatalogItem] = {}
        self.stats = CatalogStats()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def apply(self, key: str, item: CatalogItem | None) -> None:
        """Apply one topic message: an item upserts it under ``key``, None deletes ``key``."""
        if item is None:
            self._items.pop(key, None)
            self.stats.deletes += 1
            return
        self._items[key] = _sanitized(item, key)
        self.stats.upserts += 1

    def apply_message(
        self, key: str, payload: bytes | None, decode: Callable[[bytes], CatalogItem]
    ) -> None:
        """Apply a raw message: an empty or missing payload is a tombstone, else ``decode`` it.

        ``decode`` (the Function's Protobuf mapping) may raise on a corrupt payload; that is
        left to the caller, which knows whether to skip or stop the reader.
        """
        self.apply(key, decode(payload) if payload else None)

    def get(self, item_id: str) -> CatalogItem | None:
        return self._items.get(item_id)

    def join(self, item_id: str) -> ItemSnapshot:
        """The item's catalog fields, or ``found=False`` with empty fields when unknown."""
        self.stats.joins += 1
        item = self._items.get(item_id) if item_id else None
        if item is None:
            self.stats.misses += 1
            return UNKNOWN_ITEM
        return ItemSnapshot(True, item.title, item.categories, item.price)


def _sanitized(item: CatalogItem, key: str) -> CatalogItem:
    """The item under its key, without categories or a price that state cannot hold."""
    categories = tuple(c for c in item.categories if c and not CONTROL.search(c))
    price = item.price
    if price is not None and not (math.isfinite(price) and price >= 0):
        price = None
    if (item.item_id, categories, price) == (key, item.categories, item.price):
        return item
    return replace(item, item_id=key, categories=categories, price=price)
