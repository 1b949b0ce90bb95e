"""`magnetar eval` credits the range of invoices it actually read, not a fixed one."""

from __future__ import annotations

from cli.commands.eval import data_range
from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent

JAN_4_2011 = 1_294_135_200_000
DAY_MS = 86_400_000


def test_the_range_printed_is_the_range_read() -> None:
    events = [
        EnrichedEvent(f"e{n}", "t", "u", "s", records.PURCHASE, "i", JAN_4_2011 + n * 40 * DAY_MS)
        for n in range(3)
    ]
    assert data_range(events) == "invoices from 2011-01-04 to 2011-03-25"
    assert data_range([]) == "no invoices"
