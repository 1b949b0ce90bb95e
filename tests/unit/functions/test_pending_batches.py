"""The committer's buffer hands out bounded batches and halves a refused one."""

from __future__ import annotations

from functions.batch_commit import _Pending
from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent


def _pending(count: int) -> _Pending:
    pending = _Pending(oldest_at=12.5)
    for n in range(count):
        pending.events.append(
            EnrichedEvent(f"e{n}", "t", "u", "s", records.VIEW, "i", occurred_at=n)
        )
        pending.deliveries.append((f"m{n}", "topic"))
        pending.accepted_at.append(n)
        pending.payloads.append(b"%d" % n)
        pending.keys.append("u")
    return pending


def test_take_hands_out_at_most_the_batch_size_and_keeps_the_rest_in_order() -> None:
    pending = _pending(1_200)
    first = pending.take(500)
    assert [d[0] for d in first.deliveries] == [f"m{n}" for n in range(500)]
    assert len(pending.events) == len(pending.keys) == 700
    assert pending.deliveries[0] == ("m500", "topic") and pending.oldest_at == 12.5
    assert len(pending.take(500).events) == 500 and len(pending.take(500).events) == 200
    assert pending.events == []


def test_split_halves_a_batch_keeping_every_column_aligned() -> None:
    left, right = _pending(7).split()
    assert [e.event_id for e in left.events] == ["e0", "e1", "e2"]
    assert [e.event_id for e in right.events] == ["e3", "e4", "e5", "e6"]
    assert right.payloads == [b"3", b"4", b"5", b"6"] and right.accepted_at == [3, 4, 5, 6]
