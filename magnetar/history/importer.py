"""One import of a file: rows → mapping → batches → `ImportSender`, with the progress file,
the rejects file and counts kept as batches settle. The CLI (`magnetar import`) and the
through-the-platform evaluation both run imports with it."""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from magnetar.history import progress as progress_file
from magnetar.history.batches import batches
from magnetar.history.mapping import ColumnMapping, Mapped, OnlineRetailMapping, is_online_retail
from magnetar.history.progress import ImportProgress
from magnetar.history.sender import Answer, ImportSender
from magnetar.history.sources import Row, csv_header, file_format, read_rows
from magnetar.v1 import catalog_service_pb2
from magnetar.workload.wire import catalog_items

REJECTED_BY_GATEWAY = "refused by the gateway"


@dataclass
class ImportReport:
    progress: ImportProgress
    resumed_after: int
    reasons: Counter[str] = field(default_factory=Counter)
    # (line, reason, detail) of the first rejections, for the summary.
    examples: list[tuple[int, str, str]] = field(default_factory=list)
    counted: int | None = None


def choose_mapping(
    path: Path, columns: dict[str, str], constants: dict[str, str]
) -> ColumnMapping | OnlineRetailMapping:
    """The Online Retail rules for that file's header (unless columns are mapped), else the
    column mapping asked for (default: columns named like the fields)."""
    fmt = file_format(path)
    if not columns and not constants and fmt == "csv" and is_online_retail(csv_header(path)):
        return OnlineRetailMapping()
    mapping = ColumnMapping()
    return ColumnMapping({**mapping.columns, **columns}, constants)


def online_retail_catalog(path: Path, now_ms: int) -> list[catalog_service_pb2.Item]:
    """Every catalog item an Online Retail file mentions (derived categories, price), read
    ahead of the import: published before its first event, they are there when enrich joins
    that event (published after, the events would be counted without categories)."""
    mapping = OnlineRetailMapping()
    for line, row in read_rows(path):
        mapping.map(line, row, now_ms)
    return catalog_items(mapping.items.values())


def resume_point(
    progress_path: Path, fresh: ImportProgress, *, again: bool
) -> tuple[ImportProgress, str]:
    """The progress to continue from, and a sentence saying where it starts."""
    previous = progress_file.load(progress_path)
    if previous is None:
        return fresh, "starting at the first row"
    if not previous.same_file(fresh):
        return fresh, f"{progress_path} is of another file or tenant: starting at the first row"
    if previous.finished and not again:
        raise FileExistsError(
            f"{fresh.file} was imported into {fresh.tenant} already ({progress_path}); "
            "pass --again to import it once more (ids the ledger has forgotten count twice)"
        )
    if previous.finished:
        return fresh, "importing again from the first row (--again)"
    return previous, (
        f"resuming after line {previous.done_line:,} "
        f"({previous.accepted:,} events imported, {previous.rejected:,} rows rejected before)"
    )


def run_import(
    path: Path,
    mapping: Callable[[int, Row, int], Mapped],
    sender: ImportSender,
    progress_path: Path,
    start: ImportProgress,
    *,
    batch_size: int = 1000,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    on_settled: Callable[[ImportProgress, int], None] | None = None,
) -> ImportReport:
    """Import the rows after `start.done_line`; the progress file advances with every
    settled batch, so an interruption (Ctrl-C, a crash, a failed stream) resumes there."""
    current = start
    report = ImportReport(current, current.done_line)
    rejects = progress_file.rejects_path(progress_path)
    mode = "a" if current.done_line else "w"
    rows = read_rows(path)
    with rejects.open(mode, newline="") as out:
        writer = csv.writer(out)
        if mode == "w":
            writer.writerow(["line", "reason", "detail"])
        answers = sender.send(
            batches(rows, mapping, now_ms(), after_line=current.done_line, size=batch_size)
        )
        for answer in answers:
            settled = _settle(answer, writer, report, out)
            current.done_line = answer.batch.last_line
            current.accepted += settled[0]
            current.rejected += settled[1]
            if answer.response is not None and answer.response.HasField("tenant_counted_events"):
                report.counted = answer.response.tenant_counted_events
            progress_file.save(progress_path, current)
            if on_settled is not None:
                on_settled(current, answer.batch.last_line)
    current.finished = True
    progress_file.save(progress_path, current)
    return report


def _settle(answer: Answer, writer: Any, report: ImportReport, out: IO[str]) -> tuple[int, int]:
    rows: list[tuple[int, str, str]] = [(r.line, r.reason, r.detail) for r in answer.batch.rejected]
    accepted = 0
    if answer.response is not None:
        accepted = answer.response.accepted_count
        for rejection in answer.response.rejected_events:
            detail = "; ".join(f"{v.field}: {v.description}" for v in rejection.violations)
            rows.append((answer.batch.lines[rejection.index], REJECTED_BY_GATEWAY, detail))
    rows.sort()
    for row in rows:
        writer.writerow(row)
        report.reasons[row[1]] += 1
        if len(report.examples) < 10:
            report.examples.append(row)
    out.flush()
    return accepted, len(rows)
