from __future__ import annotations

import lzma
from collections import Counter
from pathlib import Path

import pytest

from magnetar.personalization import records
from magnetar.workload.online_retail import (
    derive_categories,
    is_product,
    parse_rows,
    read_online_retail,
)

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _row(
    invoice: str = "536365",
    code: str = "85123A",
    description: str = "WHITE HANGING HEART T-LIGHT HOLDER",
    quantity: str = "6",
    date: str = "2010-12-01 08:26:00",
    price: str = "2.55",
    customer: str = "17850",
) -> dict[str, str]:
    return {
        "InvoiceNo": invoice,
        "StockCode": code,
        "Description": description,
        "Quantity": quantity,
        "InvoiceDate": date,
        "UnitPrice": price,
        "CustomerID": customer,
        "Country": "United Kingdom",
    }


def test_a_purchase_line_becomes_a_purchase_of_its_customer_in_its_invoice() -> None:
    (event,) = parse_rows([_row()])
    assert event.type == records.PURCHASE
    assert (event.user_id, event.session_id, event.item_id) == ("17850", "536365", "85123A")
    assert event.occurred_at == 1291191960000
    assert (event.quantity, event.price, event.value) == (6, 2.55, 15.3)
    assert event.categories == ("derived:lighting",)


def test_a_cancellation_line_is_a_cancel_event_with_a_positive_quantity() -> None:
    (event,) = parse_rows([_row(invoice="C536379", quantity="-2")])
    assert event.type == records.CANCEL
    assert event.quantity == 2


def test_lines_without_a_customer_become_an_anonymous_basket_or_are_dropped() -> None:
    (event,) = parse_rows([_row(customer="")])
    assert event.user_id == "anon-536365"
    skipped: Counter[str] = Counter()
    assert list(parse_rows([_row(customer="")], keep_anonymous=False, skipped=skipped)) == []
    assert skipped == {"no customer id": 1}


def test_non_products_free_lines_and_stock_adjustments_are_dropped_and_counted() -> None:
    skipped: Counter[str] = Counter()
    rows = [
        _row(code="POST"),
        _row(code="DCGS0003"),
        _row(code="gift_0001_20"),
        _row(price="0"),
        _row(quantity="-5", customer=""),
    ]
    assert list(parse_rows(rows, skipped=skipped)) == []
    assert skipped == {"non-product code": 3, "no unit price": 1, "stock adjustment": 1}


def test_stock_codes_are_upper_cased_so_both_spellings_are_one_item() -> None:
    (event,) = parse_rows([_row(code="15056bl")])
    assert event.item_id == "15056BL"


def test_event_ids_follow_file_order_within_an_invoice() -> None:
    events = list(parse_rows([_row(code="A1"), _row(code="A2")]))
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)
    assert events[0].event_id != events[1].event_id


def test_categories_are_derived_from_whole_keywords_and_labelled() -> None:
    assert derive_categories("CHRISTMAS CANDLE") == ("derived:christmas", "derived:lighting")
    assert derive_categories("STRING OF BEADS") == ("derived:jewellery",)
    assert derive_categories("SOMETHING ELSE ENTIRELY") == ()


def test_is_product_rejects_fees_and_vouchers() -> None:
    assert is_product("85123A")
    assert not any(is_product(code) for code in ("M", "BANK CHARGES", "DCGSSBOY", "gift_0001_10"))


def test_the_compressed_file_is_read_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv.xz"
    lines = [
        HEADER,
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,UK",
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,UK",
    ]
    path.write_bytes(lzma.compress("\n".join(lines).encode()))
    assert [e.item_id for e in read_online_retail(path)] == ["85123A", "71053"]


def test_a_missing_file_is_reported_by_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.csv\.xz"):
        list(read_online_retail(tmp_path / "absent.csv.xz"))
