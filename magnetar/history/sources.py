"""Rows of a history file, each with the line (or row) number a person finds it at.

Formats, by suffix (a trailing ``.xz`` or ``.gz`` is decompressed on the fly):

- ``.csv``: a header line, then one row per record; a row's number is the file line it
  starts on (the first data row is line 2);
- ``.jsonl`` / ``.ndjson``: one JSON object per line; the number is the line (blank lines
  are skipped, a line that is not an object is yielded as an error row);
- ``.parquet``: read with pyarrow one record batch at a time; the number is the row, from 1.

Values are passed on as read (strings from CSV, JSON and Parquet types otherwise); the
mapping (`magnetar.history.mapping`) decides what they mean.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

Row = Mapping[str, Any]
# The key an unreadable JSON line is reported under, with the parser's message.
UNREADABLE = "\0unreadable"

FORMATS = ("csv", "jsonl", "parquet")


def file_format(path: Path) -> str:
    """csv, jsonl or parquet, from the name; ValueError for anything else."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".xz", ".gz", ".bz2"):
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".csv":
        return "csv"
    if last in (".jsonl", ".ndjson"):
        return "jsonl"
    if last == ".parquet":
        return "parquet"
    raise ValueError(f"{path.name}: not a .csv, .jsonl or .parquet file (optionally .xz/.gz)")


@contextmanager
def _text(path: Path) -> Iterator[IO[str]]:
    suffix = path.suffix.lower()
    opener: Any = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}.get(suffix, open)
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        yield text


def read_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, Row]]:
    """(number, row) for every row of the file, in file order."""
    fmt = fmt or file_format(path)
    if fmt == "csv":
        yield from _csv_rows(path)
    elif fmt == "jsonl":
        yield from _json_rows(path)
    elif fmt == "parquet":
        yield from _parquet_rows(path)
    else:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def csv_header(path: Path) -> list[str]:
    with _text(path) as text:
        return next(csv.reader(text), [])


def _csv_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with _text(path) as text:
        reader = csv.DictReader(text)
        if reader.fieldnames is None:  # reading the header; an empty file has no rows
            return
        line = reader.line_num + 1
        for row in reader:
            yield line, row
            line = reader.line_num + 1


def _json_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with _text(path) as text:
        for line, raw in enumerate(text, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError as error:
                yield line, {UNREADABLE: f"not JSON: {error}"}
                continue
            if not isinstance(value, dict):
                yield line, {UNREADABLE: "not a JSON object"}
                continue
            yield line, value


def _parquet_rows(path: Path) -> Iterator[tuple[int, Row]]:
    import pyarrow.parquet as pq  # only Parquet imports need pyarrow

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def count_rows(path: Path, fmt: str | None = None) -> int:
    """How many rows `read_rows` will yield (for the progress bar's total and ETA)."""
    fmt = fmt or file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return sum(1 for _ in read_rows(path, fmt))
