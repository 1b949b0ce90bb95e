"""Replay of the UCI Online Retail data set as enriched events.

Each invoice line becomes at most one `EnrichedEvent` (purchases; "C" invoices as `cancel`
events), or is dropped and counted by reason. Categories are derived from the description
and labelled "derived:". Event ids carry the file's line number, so ordering by
(occurred_at, event_id) is file order and the same file gives the same events. The file lives
outside the repository; callers pass its path (docs/quality.md, "Protocol")."""

from __future__ import annotations

import csv
import io
import lzma
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent

CREDIT = "Chen, Sain, Guo (2012), Online Retail, UCI Machine Learning Repository"
DEFAULT_TENANT = "online-retail"
CATEGORY_PREFIX = "derived:"

NON_PRODUCT_CODES = frozenset(
    {"POST", "D", "M", "DOT", "C2", "S", "B", "BANK CHARGES", "CRUK", "AMAZONFEE", "PADS"}
)
NON_PRODUCT_PREFIXES = ("DCGS", "GIFT_")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Keyword -> derived category. Whole words of the upper-cased description; an item may fall
# into several categories ("CHRISTMAS CANDLE" is christmas and lighting).
_CATEGORY_KEYWORDS: Mapping[str, frozenset[str]] = {
    "christmas": _words("CHRISTMAS XMAS ADVENT REINDEER SANTA SNOWFLAKE WREATH BAUBLE NATIVITY"),
    "easter": _words("EASTER EGG EGGS CHICK CHICKS BUNNY"),
    "lighting": _words("LIGHT LIGHTS CANDLE CANDLES LANTERN LANTERNS LAMP INCENSE"),
    "jewellery": _words(
        "NECKLACE BRACELET EARRINGS RING CHARM PENDANT BEAD BEADS BEADED DIAMANTE BLING BROOCH HAIR"
    ),
    "bags": _words("BAG BAGS PURSE WALLET BACKPACK SHOPPER LUGGAGE"),
    "kitchen": _words(
        "MUG MUGS CUP CUPS TEA TEACUP COFFEE PLATE PLATES BOWL BOWLS CAKE CAKES CAKESTAND "
        "BAKING CUTLERY SPOON SPOONS TRAY JAM PANTRY KITCHEN APRON JUG DISH NAPKIN NAPKINS "
        "LUNCH"
    ),
    "stationery": _words(
        "CARD CARDS PAPER WRAP NOTEBOOK PENCIL PENCILS PEN PENS STICKER STICKERS TAPE "
        "ENVELOPE BOOK CALENDAR ERASER DIARY RIBBON RIBBONS"
    ),
    "party": _words("PARTY BUNTING BALLOON BALLOONS BIRTHDAY GARLAND CANDY STRAWS CONFETTI"),
    "home-decor": _words(
        "SIGN FRAME CLOCK DOORMAT CUSHION MIRROR HOOK HANGER DOORSTOP DECORATION ORNAMENT "
        "TILE PICTURE PHOTO VASE WALL KNOB DRAWER CABINET"
    ),
    "storage": _words("BOX BOXES TIN TINS JAR JARS BASKET STORAGE TRINKET"),
    "toys": _words(
        "TOY TOYS DOLL DOLLY GAME GAMES JIGSAW BLOCKS PLAYHOUSE PUZZLE TEDDY FELTCRAFT SKIPPING"
    ),
    "garden": _words("GARDEN PLANT PLANTER BIRD WATERING HERB"),
}

_WORD = re.compile(r"[A-Z]+")


def derive_categories(description: str) -> tuple[str, ...]:
    """Categories derived from a product title's keywords, labelled "derived:<name>"."""
    words = set(_WORD.findall(description.upper()))
    return tuple(
        CATEGORY_PREFIX + name
        for name, keywords in _CATEGORY_KEYWORDS.items()
        if not words.isdisjoint(keywords)
    )


def is_product(stock_code: str) -> bool:
    code = stock_code.strip().upper()
    return code not in NON_PRODUCT_CODES and not code.startswith(NON_PRODUCT_PREFIXES)


def _epoch_ms(invoice_date: str) -> int:
    parsed = datetime.strptime(invoice_date, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1000


class RowParser:
    """One data row at a time (`parse`), so a caller can say which line became what.

    Keeps the parsed descriptions and dates of the rows seen: lines of an invoice share
    their date string, and parsing each distinct one once halves the time to read the file.
    """

    def __init__(self, tenant_id: str = DEFAULT_TENANT, keep_anonymous: bool = True) -> None:
        self._tenant = tenant_id
        self._keep_anonymous = keep_anonymous
        self._descriptions: dict[str, tuple[str, ...]] = {}
        self._instants: dict[str, int] = {}

    def parse(self, line: int, row: Mapping[str, str]) -> EnrichedEvent | str:
        """The event of data row number `line` (1 = the first after the header), or why the
        row is dropped (see the module doc)."""
        code = row["StockCode"].strip().upper()
        if not is_product(code):
            return "non-product code"
        price = float(row["UnitPrice"])
        if price <= 0:
            return "no unit price"
        invoice = row["InvoiceNo"].strip()
        quantity = int(float(row["Quantity"]))
        cancelled = invoice.upper().startswith("C")
        if quantity <= 0 and not cancelled:
            return "stock adjustment"
        customer = row["CustomerID"].strip()
        if not customer:
            if not self._keep_anonymous:
                return "no customer id"
            customer = f"anon-{invoice}"
        elif customer.endswith(".0"):
            customer = customer[:-2]
        description = row["Description"].strip()
        categories = self._descriptions.get(description)
        if categories is None:
            categories = self._descriptions[description] = derive_categories(description)
        units = abs(quantity)
        date = row["InvoiceDate"].strip()
        occurred_at = self._instants.get(date)
        if occurred_at is None:
            occurred_at = self._instants[date] = _epoch_ms(date)
        return EnrichedEvent(
            event_id=event_id_of(line),
            tenant_id=self._tenant,
            user_id=customer,
            session_id=invoice,
            type=records.CANCEL if cancelled else records.PURCHASE,
            item_id=code,
            occurred_at=occurred_at,
            value=round(price * units, 4),
            quantity=units,
            categories=categories,
            price=price,
        )


def event_id_of(line: int) -> str:
    """The event id of data row `line`: file order is (occurred_at, event_id) order."""
    return f"or-{line:07d}"


def parse_rows(
    rows: Iterable[Mapping[str, str]],
    tenant_id: str = DEFAULT_TENANT,
    keep_anonymous: bool = True,
    skipped: Counter[str] | None = None,
) -> Iterator[EnrichedEvent]:
    """Turn CSV rows (dicts by column name, file order) into events; see the module doc.

    Each dropped line is counted under its reason in `skipped` when given.
    """
    dropped: Counter[str] = Counter() if skipped is None else skipped
    parser = RowParser(tenant_id, keep_anonymous)
    for line, row in enumerate(rows, start=1):
        parsed = parser.parse(line, row)
        if isinstance(parsed, str):
            dropped[parsed] += 1
        else:
            yield parsed


def read_online_retail(
    path: Path,
    tenant_id: str = DEFAULT_TENANT,
    keep_anonymous: bool = True,
    skipped: Counter[str] | None = None,
) -> Iterator[EnrichedEvent]:
    """Stream events from the data file (`.csv.xz` or plain `.csv`), in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"Online Retail data not found at {path}")
    with (
        lzma.open(path, "rb") if path.suffix == ".xz" else path.open("rb") as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as text,
    ):
        yield from parse_rows(csv.DictReader(text), tenant_id, keep_anonymous, skipped)
