"""Mapped rows grouped into import batches: up to `size` events each, with the rows that
were rejected on the way riding along, so a batch settles every row between the previous
batch's last line and its own (`magnetar.history.progress`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from magnetar.history.mapping import Mapped, Rejected
from magnetar.history.sources import Row
from magnetar.v1 import events_pb2


@dataclass
class Batch:
    batch_id: int
    # The last file line this batch settles.
    last_line: int = 0
    events: list[events_pb2.Event] = field(default_factory=list)
    # The file line of each event, for reporting the gateway's rejections by line.
    lines: list[int] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def batches(
    rows: Iterable[tuple[int, Row]],
    mapper: Callable[[int, Row, int], Mapped],
    now_ms: int,
    *,
    after_line: int = 0,
    size: int = 1000,
) -> Iterator[Batch]:
    """Batches of the rows after `after_line`; the last may hold rejections only."""
    number = 1
    batch = Batch(number)
    for line, row in rows:
        if line <= after_line:
            continue
        mapped = mapper(line, row, now_ms)
        batch.last_line = line
        if isinstance(mapped, Rejected):
            batch.rejected.append(mapped)
            continue
        batch.events.append(mapped)
        batch.lines.append(line)
        if len(batch.events) >= size:
            yield batch
            number += 1
            batch = Batch(number)
    if batch.last_line:
        yield batch
