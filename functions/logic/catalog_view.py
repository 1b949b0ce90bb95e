"""The compacted catalog topic as an in-memory table, and the join of events with it.

Messages applied in arrival order leave each item as its last write; an empty value deletes
it; the message key is the item id. A join sees an item before or after an update, never half
of one. An event whose item is unknown is joined with empty fields. Categories that are empty
or hold a control character are dropped, and a price that is not finite and non-negative
becomes "not given" (docs/pipeline.md, "The catalog")."""

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
