"""Rows of CSV, JSON Lines and Parquet files map to events or to a rejection with the line
and the reason; the Online Retail file maps as the offline evaluation reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from magnetar.history.importer import choose_mapping
from magnetar.history.mapping import (
    FUTURE_TIME,
    MISSING_ID,
    ONLINE_RETAIL_COLUMNS,
    UNKNOWN_TYPE,
    UNPARSABLE_TIME,
    UNREADABLE_ROW,
    ColumnMapping,
    OnlineRetailMapping,
    Rejected,
    parse_time_ms,
)
from magnetar.history.sources import count_rows, read_rows
from magnetar.v1 import events_pb2
from magnetar.workload import online_retail
from magnetar.workload.wire import to_wire_event

NOW_MS = 1_750_000_000_000
CSV = (
    "event_id,user_id,type,item_id,occurred_at,quantity\n"
    "e1,u1,purchase,mug,2011-01-04T10:00:00,2\n"
    ",u1,view,mug,2011-01-04T10:00:00,\n"
    "e3,u1,view,mug,yesterday,\n"
    "e4,u1,view,mug,2099-01-01T00:00:00Z,\n"
    "e5,u1,teleport,mug,1294135200,\n"
    "e6,,view,mug,1294135200000,\n"
)


def _map_all(path: Path, mapping: ColumnMapping) -> list[events_pb2.Event | Rejected]:
    return [mapping.map(line, row, NOW_MS) for line, row in read_rows(path)]


def test_every_csv_row_becomes_an_event_or_a_rejection_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(CSV)
    first, *rest = _map_all(path, ColumnMapping())
    assert isinstance(first, events_pb2.Event)
    assert (first.event_id, first.type, first.quantity) == ("e1", events_pb2.EVENT_TYPE_PURCHASE, 2)
    assert first.occurred_at.ToMilliseconds() == 1_294_135_200_000
    assert [(r.line, r.reason) for r in rest if isinstance(r, Rejected)] == [
        (3, MISSING_ID),
        (4, UNPARSABLE_TIME),
        (5, FUTURE_TIME),
        (6, UNKNOWN_TYPE),
        (7, MISSING_ID),
    ]
    assert count_rows(path) == 6


def test_columns_can_be_renamed_and_fields_set(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("id,customer,sku,at\nA1,c9,tent,1294135200\n")
    mapping = ColumnMapping(
        {"event_id": "id", "user_id": "customer", "item_id": "sku", "occurred_at": "at"},
        {"type": "PURCHASE"},
    )
    [event] = _map_all(path, mapping)
    assert isinstance(event, events_pb2.Event)
    assert (event.event_id, event.user_id, event.item_id) == ("A1", "c9", "tent")


def test_json_lines_report_unreadable_lines_by_number(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    good = {"event_id": "j1", "user_id": "u", "type": "view", "item_id": "i", "occurred_at": 1e12}
    path.write_text(json.dumps(good) + "\n\n{not json\n[1]\n")
    mapped = _map_all(path, ColumnMapping())
    assert isinstance(mapped[0], events_pb2.Event)
    assert [(r.line, r.reason) for r in mapped[1:] if isinstance(r, Rejected)] == [
        (3, UNREADABLE_ROW),
        (4, UNREADABLE_ROW),
    ]


def test_parquet_rows_are_read_with_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "history.parquet"
    table = pa.table(
        {
            "event_id": ["p1", "p2"],
            "user_id": ["u1", "u2"],
            "type": ["cancel", "purchase"],
            "item_id": ["mug", "mug"],
            "occurred_at": pa.array([1_294_135_200_000, None], type=pa.int64()),
        }
    )
    pq.write_table(table, path)
    cancel, missing = _map_all(path, ColumnMapping())
    assert isinstance(cancel, events_pb2.Event) and cancel.type == events_pb2.EVENT_TYPE_CANCEL
    assert isinstance(missing, Rejected) and (missing.line, missing.reason) == (2, UNPARSABLE_TIME)
    assert count_rows(path) == 2


def test_times_read_as_iso_or_epoch_seconds_or_milliseconds() -> None:
    assert parse_time_ms("2011-01-04 10:00:00") == 1_294_135_200_000
    assert parse_time_ms("2011-01-04T11:00:00+01:00") == 1_294_135_200_000
    assert parse_time_ms(1_294_135_200) == 1_294_135_200_000
    assert parse_time_ms("1294135200000") == 1_294_135_200_000
    assert parse_time_ms("") is None and parse_time_ms("soon") is None


def test_the_online_retail_file_maps_to_the_offline_replays_events(tmp_path: Path) -> None:
    header = ",".join(ONLINE_RETAIL_COLUMNS)
    path = tmp_path / "online_retail.csv"
    path.write_text(
        header
        + "\n536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,UK\n"
        + "536365,POST,POSTAGE,1,2010-12-01 08:26:00,18,17850,UK\n"
        + "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,2010-12-01 09:41:00,2.55,17850,UK\n"
    )
    mapping = choose_mapping(path, {}, {})
    assert isinstance(mapping, OnlineRetailMapping)
    mapped = [mapping.map(line, row, NOW_MS) for line, row in read_rows(path)]
    offline = list(online_retail.read_online_retail(path))
    assert [m for m in mapped if isinstance(m, events_pb2.Event)] == [
        to_wire_event(e) for e in offline
    ]
    [skipped] = [m for m in mapped if isinstance(m, Rejected)]
    assert (skipped.line, skipped.reason) == (3, "Online Retail rule: non-product code")
    assert mapped[2].type == events_pb2.EVENT_TYPE_CANCEL  # type: ignore[union-attr]
