"""From a row of a history file to a `magnetar.v1.Event`, or the reason it cannot be one.

Pure: no I/O. `ColumnMapping` reads each field from a column (renamed or set constant);
`OnlineRetailMapping` applies the rules of `magnetar.workload.online_retail`, so imported and
replayed events are the same events, ids included. A row that does not map is a `Rejected`
with its line and a reason a person can act on; nothing is dropped without one
(docs/ingestion.md, "`magnetar import`")."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from magnetar.event_contract import MAX_FUTURE_S
from magnetar.history.sources import UNREADABLE, Row
from magnetar.personalization.records import EnrichedEvent
from magnetar.v1 import events_pb2
from magnetar.workload import online_retail
from magnetar.workload.wire import to_wire_event

FIELDS = (
    "event_id",
    "user_id",
    "anonymous_id",
    "session_id",
    "type",
    "item_id",
    "occurred_at",
    "value",
    "quantity",
)
# The gateway refuses events more than this far ahead of its clock (events.proto).
MAX_FUTURE_MS = MAX_FUTURE_S * 1000
ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

MISSING_ID = "missing id"
UNPARSABLE_TIME = "unparsable time"
FUTURE_TIME = "future time"
UNKNOWN_TYPE = "unknown type"
BAD_NUMBER = "bad number"
UNREADABLE_ROW = "unreadable row"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that is not imported: its line, why, and the offending value or detail."""

    line: int
    reason: str
    detail: str = ""


Mapped = events_pb2.Event | Rejected


def parse_time_ms(value: Any) -> int | None:
    """Epoch milliseconds of an ISO 8601 text or an epoch number; None if unparsable."""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(stamp.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value or "").strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parse_time_ms(parsed)
    if not math.isfinite(number) or number <= 0:
        return None
    return int(number if number > 1e11 else number * 1000)


def event_type(value: Any) -> int | None:
    name = str(value or "").strip().upper().removeprefix("EVENT_TYPE_")
    if not name:
        return None
    try:
        number = int(events_pb2.EventType.Value(f"EVENT_TYPE_{name}"))
    except ValueError:
        return None
    return number or None


@dataclass(frozen=True)
class ColumnMapping:
    """Event fields read from columns (`columns`: field → column) or set (`constants`)."""

    columns: Mapping[str, str] = field(default_factory=lambda: {f: f for f in FIELDS})
    constants: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = (set(self.columns) | set(self.constants)) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown event fields {sorted(unknown)}: one of {', '.join(FIELDS)}")

    def _value(self, row: Row, name: str) -> Any:
        if name in self.constants:
            return self.constants[name]
        column = self.columns.get(name)
        return None if column is None else row.get(column)

    def _text(self, row: Row, name: str) -> str:
        value = self._value(row, name)
        return "" if value is None else str(value).strip()

    def map(self, line: int, row: Row, now_ms: int) -> Mapped:
        if UNREADABLE in row:
            return Rejected(line, UNREADABLE_ROW, str(row[UNREADABLE]))
        event_id = self._text(row, "event_id")
        user_id = self._text(row, "user_id")
        anonymous_id = self._text(row, "anonymous_id")
        if not event_id:
            return Rejected(line, MISSING_ID, "no event_id")
        if not user_id and not anonymous_id:
            return Rejected(line, MISSING_ID, "no user_id or anonymous_id")
        raw_time = self._value(row, "occurred_at")
        occurred_ms = parse_time_ms(raw_time)
        if occurred_ms is None:
            return Rejected(line, UNPARSABLE_TIME, repr(raw_time))
        if occurred_ms > now_ms + MAX_FUTURE_MS:
            return Rejected(line, FUTURE_TIME, repr(raw_time))
        kind = event_type(self._value(row, "type"))
        if kind is None:
            return Rejected(line, UNKNOWN_TYPE, repr(self._value(row, "type")))
        try:
            value = _number(self._value(row, "value"), float)
            quantity = _number(self._value(row, "quantity"), int)
        except ValueError as error:
            return Rejected(line, BAD_NUMBER, str(error))
        event = events_pb2.Event(
            event_id=event_id,
            user_id=user_id,
            anonymous_id=anonymous_id,
            session_id=self._text(row, "session_id"),
            type=kind,  # type: ignore[arg-type]
            item_id=self._text(row, "item_id"),
            value=value,
            quantity=quantity,
        )
        event.occurred_at.FromMilliseconds(occurred_ms)
        return event


def _number(value: Any, kind: Callable[[Any], Any]) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return kind(0)
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None


class OnlineRetailMapping:
    """The UCI Online Retail file's rules (`magnetar.workload.online_retail`), row by row.

    The file's event ids number its data rows from 1 (``or-0000001``), as the offline replay
    does; the line reported is the file line (the data row + 1 for the header). The catalog
    items the rows mention (derived categories, prices) are collected in `records` order for
    the caller to publish."""

    def __init__(self) -> None:
        self._parser = online_retail.RowParser()
        self.items: dict[str, EnrichedEvent] = {}

    def map(self, line: int, row: Row, now_ms: int) -> Mapped:
        parsed = self._parser.parse(line - 1, {k: str(v or "") for k, v in row.items()})
        if isinstance(parsed, str):
            return Rejected(line, f"Online Retail rule: {parsed}")
        if parsed.occurred_at > now_ms + MAX_FUTURE_MS:
            return Rejected(line, FUTURE_TIME, row.get("InvoiceDate", ""))
        self.items.setdefault(parsed.item_id, parsed)
        event = to_wire_event(parsed)
        assert event is not None  # purchases and cancellations both have a wire type
        return event


def is_online_retail(header: list[str]) -> bool:
    return tuple(h.strip() for h in header) == ONLINE_RETAIL_COLUMNS
