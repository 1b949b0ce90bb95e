"""Catalog writes: the documented limits, all or nothing, the topic written inside the store's
transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from magnetar.errors import InvalidArgument, NotFound, Unavailable
from magnetar.serving.catalog import Catalog, CatalogItem, check_items


class FakeStore:
    """Keeps what a transaction wrote only if `before_commit` returned."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], CatalogItem] = {}
        self.deleted: set[tuple[str, str]] = set()

    def upsert(
        self, tenant_id: str, items: Sequence[CatalogItem], before_commit: Callable[[], None]
    ) -> None:
        before_commit()
        for item in items:
            self.items[(tenant_id, item.item_id)] = item
            self.deleted.discard((tenant_id, item.item_id))

    def get(self, tenant_id: str, item_id: str) -> CatalogItem | None:
        key = (tenant_id, item_id)
        return None if key in self.deleted else self.items.get(key)

    def delete(
        self, tenant_id: str, item_id: str, before_commit: Callable[[], None]
    ) -> CatalogItem | None:
        item = self.get(tenant_id, item_id)
        if item is None:
            return None
        before_commit()
        self.deleted.add((tenant_id, item_id))
        return item


class FakeTopic:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, CatalogItem | None]] = []
        self.failure: Exception | None = None

    def publish(self, tenant_id: str, items: Sequence[CatalogItem]) -> None:
        if self.failure:
            raise self.failure
        self.records += [(tenant_id, item.item_id, item) for item in items]

    def tombstone(self, tenant_id: str, item_id: str) -> None:
        if self.failure:
            raise self.failure
        self.records.append((tenant_id, item_id, None))


def _catalog() -> tuple[Catalog, FakeStore, FakeTopic]:
    store, topic = FakeStore(), FakeTopic()
    return Catalog(store, topic, clock_ms=lambda: 1_700_000_000_000), store, topic


def _fields(items: Sequence[CatalogItem]) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        check_items(items)
    return [v.field for v in caught.value.violations]


def test_an_upsert_writes_the_store_and_the_topic_stamped_with_the_write_time() -> None:
    catalog, _, topic = _catalog()
    items = [CatalogItem("mug", "Blue Mug", ("home", "kitchen"), 9.5, True, {"brand": "acme"})]
    assert catalog.upsert_items("acme", items) == 1
    stored = catalog.get_item("acme", "mug")
    assert stored.title == "Blue Mug"
    assert stored.update_time_ms == 1_700_000_000_000
    assert topic.records == [("acme", "mug", stored)]


def test_a_failed_publish_writes_nothing() -> None:
    catalog, store, topic = _catalog()
    topic.failure = Unavailable("pulsar down")
    with pytest.raises(Unavailable):
        catalog.upsert_items("acme", [CatalogItem("mug")])
    assert store.items == {}


def test_delete_tombstones_the_topic_and_hides_the_item() -> None:
    catalog, _, topic = _catalog()
    catalog.upsert_items("acme", [CatalogItem("mug", "Blue Mug")])
    assert catalog.delete_item("acme", "mug").title == "Blue Mug"
    assert topic.records[-1] == ("acme", "mug", None)
    with pytest.raises(NotFound):
        catalog.get_item("acme", "mug")
    with pytest.raises(NotFound):
        catalog.delete_item("acme", "mug")


def test_tenants_do_not_see_each_others_items() -> None:
    catalog, _, _ = _catalog()
    catalog.upsert_items("acme", [CatalogItem("mug")])
    with pytest.raises(NotFound):
        catalog.get_item("globex", "mug")


def test_each_broken_limit_names_its_field() -> None:
    assert _fields(
        [
            CatalogItem("ok"),
            CatalogItem("", title="t" * 513),
            CatalogItem("c", categories=tuple(f"c{n}" for n in range(11))),
            CatalogItem("d", categories=("", "a\nb"), price=float("nan")),
            CatalogItem("e", price=-1, attributes={"Brand": "x", "ok": "v" * 1025}),
            CatalogItem("ok"),
        ]
    ) == [
        "items[1].item_id",
        "items[1].title",
        "items[2].categories",
        "items[3].categories[0]",
        "items[3].categories[1]",
        "items[3].price",
        "items[4].price",
        "items[4].attributes['Brand']",
        "items[4].attributes['ok']",
        "items[5].item_id",
    ]


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_holds_1_to_1000_items(count: int) -> None:
    assert _fields([CatalogItem(f"i{n}") for n in range(count)]) == ["items"]


def test_an_invalid_item_fails_the_whole_batch_before_anything_is_written() -> None:
    catalog, store, topic = _catalog()
    with pytest.raises(InvalidArgument):
        catalog.upsert_items("acme", [CatalogItem("ok"), CatalogItem("bad\x00")])
    assert (store.items, topic.records) == ({}, [])


def test_echoed_keys_and_item_ids_are_cut_to_64_characters() -> None:
    (field,) = _fields([CatalogItem("a", attributes={"K" * 10_000: "v"})])
    assert field == "items[0].attributes['" + "K" * 63 + "…']"
    catalog, _, _ = _catalog()
    with pytest.raises(NotFound) as missing:
        catalog.get_item("acme", "x" * 128)
    assert len(missing.value.message) < 120
    assert missing.value.metadata["item_id"] == "x" * 63 + "…"
