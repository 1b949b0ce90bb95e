"""A rebuild's replay meets the pipeline's decisions: validation by topic, the catalog join,
the dedupe window, erasure markers; dead letters are counted, not published; a batch
PostgreSQL refuses is halved down to the event."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from functions.logic.catalog_view import CatalogItem, CatalogView
from functions.replay import STATE_REFUSED, Replay
from magnetar.db.state_writer import BatchOutcome
from magnetar.personalization.records import EnrichedEvent
from magnetar.raw_events import erasure_marker
from magnetar.v1 import events_pb2

NOW_MS = int(time.time() * 1000)
YEAR_MS = 365 * 24 * 3600 * 1000
RAW = "persistent://acme/events/raw-partition-1"
IMPORT = "persistent://acme/events/import-partition-1"


@dataclass(frozen=True)
class FakeId:
    seq: int

    def serialize(self) -> bytes:
        return self.seq.to_bytes(8, "big")


@dataclass
class FakeMessage:
    payload: bytes
    key: str
    topic: str
    seq: int
    published_ms: int = NOW_MS
    props: dict[str, str] = field(default_factory=dict)

    def data(self) -> bytes:
        return self.payload

    def partition_key(self) -> str:
        return self.key

    def message_id(self) -> FakeId:
        return FakeId(self.seq)

    def topic_name(self) -> str:
        return self.topic

    def properties(self) -> dict[str, str]:
        return self.props

    def publish_timestamp(self) -> int:
        return self.published_ms


class Shadow:
    """Stands in for `ShadowState.commit`: remembers ids like a ledger; refuses `bad` ids."""

    def __init__(self) -> None:
        self.batches: list[list[EnrichedEvent]] = []
        self.accepted: dict[str, int] = {}
        self.ledger: set[str] = set()

    def commit(
        self, events: Sequence[EnrichedEvent], accepted: Mapping[str, int], now_ms: int
    ) -> BatchOutcome:
        if any(e.event_id.startswith("bad") for e in events):
            raise psycopg.errors.DataError("value out of range")
        self.batches.append(list(events))
        self.accepted.update(accepted)
        new = {e.event_id for e in events} - self.ledger
        self.ledger |= new
        return BatchOutcome(counted=len(new), already_counted=len(events) - len(new))


def purchase(event_id: str, user: str = "u1", item: str = "mug", at_ms: int = NOW_MS) -> bytes:
    event = events_pb2.Event(event_id=event_id, user_id=user, item_id=item)
    event.type = events_pb2.EVENT_TYPE_PURCHASE
    event.occurred_at.FromMilliseconds(at_ms)
    return event.SerializeToString()


class Feeder:
    def __init__(self, batch_size: int = 100) -> None:
        self.shadow = Shadow()
        catalog = CatalogView()
        catalog.apply("mug", CatalogItem("mug", "Mug", ("kitchen",), 4.5))
        self.replay = Replay(
            "acme",
            "persistent://acme/events/dlq",
            catalog,
            self.shadow.commit,
            batch_size=batch_size,
        )
        self.seq = 0

    def feed(self, payload: bytes, topic: str = RAW, key: str = "u1", **kw: object) -> None:
        self.seq += 1
        self.replay.feed(FakeMessage(payload, key, topic, self.seq, **kw))  # type: ignore[arg-type]


def test_replayed_events_meet_the_pipelines_decisions() -> None:
    f = Feeder()
    f.feed(purchase("h1", at_ms=NOW_MS - YEAR_MS), topic=IMPORT)  # history: any age
    f.feed(purchase("h2", at_ms=NOW_MS - YEAR_MS), topic=RAW)  # live: too old
    f.feed(b"\xff\xff not an event")
    f.feed(purchase("e1"), published_ms=NOW_MS - 5_000)
    f.feed(purchase("e1"))  # a client's repeat, inside the window
    f.feed(erasure_marker(user_id="u2").SerializeToString(), key="u2")
    f.replay.flush()

    counts = f.replay.counts
    assert (counts.read, counts.counted, counts.repeats) == (6, 2, 1)
    assert dict(counts.refused) == {"TOO_OLD": 1, "UNDECODABLE": 1}
    [batch] = f.shadow.batches
    assert [e.event_id for e in batch] == ["h1", "e1"]
    # The catalog joined, as enrich does; acceptance is the message's publish time.
    assert all(e.categories == ("kitchen",) and e.price == 4.5 for e in batch)
    assert f.shadow.accepted["e1"] == NOW_MS - 5_000


def test_time_is_judged_at_acceptance_as_carried_not_at_replay() -> None:
    f = Feeder()
    # Accepted (as the carried property says) long before it occurred: from the future.
    f.feed(purchase("odd", at_ms=NOW_MS - 1_000), props={"magnetar-accepted-at": "1"})
    f.replay.flush()
    assert dict(f.replay.counts.refused) == {"FUTURE_TIMESTAMP": 1}


def test_batches_commit_at_their_size_and_flush_commits_the_rest() -> None:
    f = Feeder(batch_size=3)
    for n in range(7):
        f.feed(purchase(f"e{n}", user=f"u{n}"), key=f"u{n}")
    assert [len(b) for b in f.shadow.batches] == [3, 3]
    f.replay.flush()
    f.replay.flush()
    assert [len(b) for b in f.shadow.batches] == [3, 3, 1]
    assert f.replay.counts.counted == 7


def test_a_batch_postgresql_refuses_is_halved_down_to_the_event() -> None:
    f = Feeder(batch_size=8)
    for n in range(8):
        event_id = "bad-5" if n == 5 else f"e{n}"
        f.feed(purchase(event_id, user=f"u{n}"), key=f"u{n}")
    counts = f.replay.counts
    assert counts.counted == 7
    assert dict(counts.refused) == {STATE_REFUSED: 1}
    assert sorted(f.shadow.ledger) == [f"e{n}" for n in range(8) if n != 5]


def test_an_event_whose_processing_raises_is_refused_not_retried() -> None:
    f = Feeder()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    f.replay.add = broken  # type: ignore[method-assign]
    f.feed(purchase("e1"))
    assert dict(f.replay.counts.refused) == {"PROCESSING_FAILED": 1}
