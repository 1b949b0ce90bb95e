from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from functions.logic.catalog_view import UNKNOWN_ITEM, CatalogItem, CatalogView, ItemSnapshot

MUG = CatalogItem("sku-1", "Blue mug", ("home", "kitchen", "mugs"), 7.5)


def decode_json(payload: bytes) -> CatalogItem:
    """A stand-in for the Function's Protobuf mapping."""
    fields = json.loads(payload)
    return CatalogItem(fields["id"], fields["title"], tuple(fields["categories"]), fields["price"])


def test_joining_a_known_item_returns_its_catalog_fields() -> None:
    view = CatalogView()
    view.apply("sku-1", MUG)

    assert view.join("sku-1") == ItemSnapshot(True, "Blue mug", ("home", "kitchen", "mugs"), 7.5)


def test_joining_an_unknown_item_gives_empty_fields_not_an_error() -> None:
    view = CatalogView()

    snapshot = view.join("sku-404")

    assert snapshot == UNKNOWN_ITEM
    assert (snapshot.found, snapshot.title, snapshot.categories, snapshot.price) == (
        False,
        "",
        (),
        None,
    )
    assert view.stats.misses == 1


def test_joining_without_an_item_id_gives_empty_fields() -> None:
    view = CatalogView()
    view.apply("", MUG)

    assert view.join("") == UNKNOWN_ITEM


def test_a_later_update_replaces_the_item() -> None:
    view = CatalogView()
    view.apply("sku-1", MUG)
    view.apply("sku-1", CatalogItem("sku-1", "Blue mug, large", ("home",), 9.0))

    assert view.join("sku-1").title == "Blue mug, large"
    assert view.join("sku-1").price == 9.0
    assert len(view) == 1


def test_a_tombstone_deletes_the_item() -> None:
    view = CatalogView()
    view.apply("sku-1", MUG)

    view.apply("sku-1", None)

    assert "sku-1" not in view
    assert view.join("sku-1") == UNKNOWN_ITEM


def test_a_tombstone_for_an_unknown_item_is_harmless() -> None:
    view = CatalogView()

    view.apply("sku-9", None)

    assert len(view) == 0


def test_empty_or_missing_payload_is_a_tombstone_and_is_not_decoded() -> None:
    view = CatalogView()
    view.apply("sku-1", MUG)
    view.apply("sku-2", MUG)

    def must_not_decode(payload: bytes) -> CatalogItem:
        raise AssertionError("a tombstone was decoded")

    view.apply_message("sku-1", b"", must_not_decode)
    view.apply_message("sku-2", None, must_not_decode)

    assert len(view) == 0


def test_a_payload_is_decoded_and_upserted() -> None:
    view = CatalogView()
    payload = json.dumps({"id": "sku-3", "title": "Plate", "categories": ["home"], "price": 3.0})

    view.apply_message("sku-3", payload.encode(), decode_json)

    assert view.join("sku-3") == ItemSnapshot(True, "Plate", ("home",), 3.0)


def test_the_message_key_wins_over_the_item_id_in_the_payload() -> None:
    view = CatalogView()

    view.apply("sku-7", MUG)

    assert view.get("sku-7") == CatalogItem("sku-7", MUG.title, MUG.categories, MUG.price)
    assert "sku-1" not in view


def test_an_item_without_a_price_joins_with_price_none() -> None:
    view = CatalogView()
    view.apply("sku-1", CatalogItem("sku-1", "Gift card"))

    assert view.join("sku-1") == ItemSnapshot(True, "Gift card", (), None)


_updates = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.none(), st.text(max_size=5)),
    ),
    max_size=40,
)


@given(_updates)
def test_view_holds_the_last_write_per_key_like_a_compacted_topic(
    updates: list[tuple[str, str | None]],
) -> None:
    view = CatalogView()
    last: dict[str, str | None] = {}
    for key, title in updates:
        view.apply(key, None if title is None else CatalogItem(key, title))
        last[key] = title

    for key in ("a", "b", "c"):
        expected = last.get(key)
        snapshot = view.join(key)
        assert snapshot.found == (expected is not None)
        assert snapshot.title == (expected or "")
    assert len(view) == sum(1 for title in last.values() if title is not None)


def test_categories_state_cannot_store_are_dropped() -> None:
    view = CatalogView()
    view.apply(
        "sku-1", CatalogItem("sku-1", "Mug", ("home", "bad\x00one", "", "tab\there", "mugs"))
    )

    assert view.join("sku-1").categories == ("home", "mugs")


@given(st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0]))
def test_a_price_that_is_not_a_finite_amount_is_not_given(price: float) -> None:
    view = CatalogView()
    view.apply("sku-1", CatalogItem("sku-1", "Mug", ("home",), price))

    assert view.join("sku-1") == ItemSnapshot(True, "Mug", ("home",), None)
