"""A tenant's item catalog: checked, stored in PostgreSQL and mirrored to the catalog topic.

Two copies, two readers: PostgreSQL answers `GetItem` and tells serving which items are
hidden; the compacted topic ``persistent://<tenant>/catalog/items`` is what the `enrich`
Function joins events with. A write goes to both inside one store transaction: the topic is
written before the transaction commits, so a failed publish leaves PostgreSQL unchanged and
a failed commit leaves at most a topic record that the client's resend writes again. Either
way the caller gets UNAVAILABLE and resends; upserts and deletions are idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from magnetar.errors import NotFound, echo
from magnetar.event_contract import (
    ATTRIBUTE_KEY,
    ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_KEY_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES,
)
from magnetar.serving.limits import Violations

MAX_BATCH_ITEMS = 1000
MAX_TITLE_BYTES = 512
MAX_CATEGORIES = 10
MAX_PRICE = 1e9


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item_id: str
    title: str = ""
    # Most general first.
    categories: tuple[str, ...] = ()
    price: float = 0.0
    # False hides the item from recommendations without deleting it.
    available: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)
    # When the item was last written (epoch ms); set by the catalog, ignored in requests.
    update_time_ms: int = 0


class CatalogStore(Protocol):
    """Where items are kept. `before_commit` runs inside the store's transaction."""

    def upsert(
        self, tenant_id: str, items: Sequence[CatalogItem], before_commit: Callable[[], None]
    ) -> None: ...

    def get(self, tenant_id: str, item_id: str) -> CatalogItem | None: ...

    def delete(
        self, tenant_id: str, item_id: str, before_commit: Callable[[], None]
    ) -> CatalogItem | None:
        """Marks the item deleted and returns it as it was; None when there is none."""
        ...


class CatalogTopic(Protocol):
    """The tenant's compacted catalog topic; both calls return once the broker has them."""

    def publish(self, tenant_id: str, items: Sequence[CatalogItem]) -> None: ...

    def tombstone(self, tenant_id: str, item_id: str) -> None: ...


def _check_item(violations: Violations, at: str, item: CatalogItem) -> None:
    violations.identifier(f"{at}.item_id", item.item_id, required=True)
    violations.text(f"{at}.title", item.title, max_bytes=MAX_TITLE_BYTES)
    if len(item.categories) > MAX_CATEGORIES:
        violations.add(f"{at}.categories", f"must hold at most {MAX_CATEGORIES} entries")
    else:
        for n, category in enumerate(item.categories):
            violations.identifier(f"{at}.categories[{n}]", category, required=True)
    violations.finite(f"{at}.price", item.price, 0.0, MAX_PRICE)
    if len(item.attributes) > MAX_ATTRIBUTES:
        violations.add(f"{at}.attributes", f"must hold at most {MAX_ATTRIBUTES} entries")
        return
    for key, value in sorted(item.attributes.items()):
        if len(key) > MAX_ATTRIBUTE_KEY_BYTES or not ATTRIBUTE_KEY.fullmatch(key):
            violations.add(
                f"{at}.attributes[{echo(key)!r}]",
                f"key must be 1 to {MAX_ATTRIBUTE_KEY_BYTES} bytes of {ATTRIBUTE_KEY_CHARS}",
            )
        violations.text(
            f"{at}.attributes[{echo(key)!r}]", value, max_bytes=MAX_ATTRIBUTE_VALUE_BYTES
        )


def check_items(items: Sequence[CatalogItem]) -> None:
    """Every limit of `UpsertItems`, for the whole batch at once."""
    violations = Violations()
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        violations.add("items", f"must hold 1 to {MAX_BATCH_ITEMS} items, got {len(items)}")
        violations.raise_if_any("invalid batch", reason="BATCH_SIZE")
    seen: set[str] = set()
    for index, item in enumerate(items):
        _check_item(violations, f"items[{index}]", item)
        if item.item_id in seen:
            violations.add(f"items[{index}].item_id", "appears more than once in the batch")
        seen.add(item.item_id)
    violations.raise_if_any("invalid items", reason="ITEMS_INVALID")


def _check_id(item_id: str) -> None:
    violations = Violations()
    violations.identifier("item_id", item_id, required=True)
    violations.raise_if_any("invalid item id")


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Catalog:
    """Upserts, reads and deletes items of any tenant."""

    def __init__(
        self,
        store: CatalogStore,
        topic: CatalogTopic,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self._store = store
        self._topic = topic
        self._clock_ms = clock_ms

    def upsert_items(self, tenant_id: str, items: Sequence[CatalogItem]) -> int:
        """All or nothing: an invalid item fails the batch before anything is written."""
        check_items(items)
        now = self._clock_ms()
        stamped = [replace(item, update_time_ms=now) for item in items]
        self._store.upsert(tenant_id, stamped, lambda: self._topic.publish(tenant_id, stamped))
        return len(stamped)

    def get_item(self, tenant_id: str, item_id: str) -> CatalogItem:
        _check_id(item_id)
        item = self._store.get(tenant_id, item_id)
        if item is None:
            raise _not_found(item_id)
        return item

    def delete_item(self, tenant_id: str, item_id: str) -> CatalogItem:
        _check_id(item_id)
        item = self._store.delete(
            tenant_id, item_id, lambda: self._topic.tombstone(tenant_id, item_id)
        )
        if item is None:
            raise _not_found(item_id)
        return item


def _not_found(item_id: str) -> NotFound:
    return NotFound(
        f"the catalog has no item {echo(item_id)!r}",
        reason="ITEM_NOT_FOUND",
        metadata={"item_id": echo(item_id)},
    )
