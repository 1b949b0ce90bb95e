"""Ingest decisions (partial success, refusal, sizes) and stream ordering, with a fake sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from gateway.event_validation import EventLike, Rejection
from gateway.ingestion import Ingestor
from magnetar.errors import InvalidArgument, Unavailable
from tests.unit.gateway.test_event_validation import NOW, event


class FakeSink:
    """Records what would be published; can be slowed per batch or made to fail."""

    def __init__(self, delays: dict[str, float] | None = None, fail_on: str | None = None) -> None:
        self.published: list[list[str]] = []
        self.delays = delays or {}
        self.fail_on = fail_on

    async def publish(
        self, tenant_id: str, events: Sequence[EventLike], timeout_s: float | None
    ) -> None:
        ids = [e.event_id for e in events]
        await asyncio.sleep(self.delays.get(ids[0], 0))
        if self.fail_on in ids:
            raise Unavailable("pulsar down")
        self.published.append(ids)


def ingestor(sink: FakeSink, **kwargs: Any) -> Ingestor:
    return Ingestor(sink, clock=lambda: NOW, **kwargs)


def test_valid_events_are_published_and_invalid_ones_reported() -> None:
    sink = FakeSink()
    outcome = asyncio.run(
        ingestor(sink).ingest("t", [event(event_id="a"), event(event_id="b", item_id="")])
    )
    assert sink.published == [["a"]]
    assert outcome.accepted_count == 1
    assert [(r.index, r.reason) for r in outcome.rejected] == [(1, Rejection.MISSING_FIELD)]


def test_no_valid_event_is_invalid_argument_and_nothing_is_published() -> None:
    sink = FakeSink()
    with pytest.raises(InvalidArgument) as refused:
        asyncio.run(ingestor(sink).ingest("t", [event(item_id=""), event(user_id="")]))
    assert refused.value.reason == "EVENTS_INVALID"
    assert [v.field for v in refused.value.violations] == ["events[0].item_id", "events[1].user_id"]
    assert sink.published == []


def test_all_or_nothing_refuses_a_batch_with_one_bad_event() -> None:
    sink = FakeSink()
    with pytest.raises(InvalidArgument):
        asyncio.run(
            ingestor(sink).ingest(
                "t", [event(event_id="a"), event(event_id="b", quantity=10**6)], all_or_nothing=True
            )
        )
    assert sink.published == []


@pytest.mark.parametrize(("count", "reason"), [(0, "BATCH_EMPTY"), (1001, "BATCH_TOO_LARGE")])
def test_batch_size_limits_name_the_limit(count: int, reason: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        asyncio.run(
            ingestor(FakeSink()).ingest("t", [event(event_id=str(i)) for i in range(count)])
        )
    assert refused.value.reason == reason
    assert refused.value.metadata["max_events"] == "1000"
    assert refused.value.violations[0].field == "events"


def test_sink_failure_reaches_the_caller() -> None:
    with pytest.raises(Unavailable):
        asyncio.run(ingestor(FakeSink(fail_on="a")).ingest("t", [event(event_id="a")]))


async def batches(*ids: str) -> AsyncIterator[tuple[int, Sequence[EventLike]]]:
    for n, event_id in enumerate(ids):
        yield n, [event(event_id=event_id)]


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def test_stream_answers_in_order_even_when_later_batches_finish_first() -> None:
    sink = FakeSink(delays={"slow": 0.05})
    answers = asyncio.run(collect(ingestor(sink).stream("t", batches("slow", "fast", "last"))))
    assert [batch_id for batch_id, _ in answers] == [0, 1, 2]
    assert sink.published[0] == ["fast"]  # published concurrently...
    assert all(outcome.accepted_count == 1 for _, outcome in answers)  # ...answered in order


def test_stream_answers_an_all_invalid_batch_instead_of_ending() -> None:
    async def run() -> list[Any]:
        async def mixed() -> AsyncIterator[tuple[int, Sequence[EventLike]]]:
            yield 7, [event(item_id="")]
            yield 8, [event(event_id="ok")]

        return await collect(ingestor(FakeSink()).stream("t", mixed()))

    answers = asyncio.run(run())
    assert [(b, o.accepted_count, len(o.rejected)) for b, o in answers] == [(7, 0, 1), (8, 1, 0)]


def test_stream_ends_at_the_first_failure_after_answering_earlier_batches() -> None:
    async def run() -> list[int]:
        answered: list[int] = []
        stream = ingestor(FakeSink(fail_on="bad")).stream("t", batches("a", "bad", "c"))
        with pytest.raises(Unavailable):
            async for batch_id, _ in stream:
                answered.append(batch_id)
        return answered

    assert asyncio.run(run()) == [0]


def test_stream_ends_with_the_limit_on_an_oversize_batch() -> None:
    async def run() -> None:
        async def oversize() -> AsyncIterator[tuple[int, Sequence[EventLike]]]:
            yield 1, [event(event_id=str(i)) for i in range(1001)]

        await collect(ingestor(FakeSink()).stream("t", oversize()))

    with pytest.raises(InvalidArgument, match="at most 1000"):
        asyncio.run(run())


def test_stream_keeps_at_most_window_batches_in_progress() -> None:
    in_progress = 0
    peak = 0

    class CountingSink(FakeSink):
        async def publish(
            self, tenant_id: str, events: Sequence[EventLike], timeout_s: float | None
        ) -> None:
            nonlocal in_progress, peak
            in_progress += 1
            peak = max(peak, in_progress)
            await asyncio.sleep(0.01)
            in_progress -= 1

    ids = [f"e{i}" for i in range(20)]
    answers = asyncio.run(
        collect(ingestor(CountingSink(), stream_window=3).stream("t", batches(*ids)))
    )
    assert len(answers) == 20
    assert peak == 3
