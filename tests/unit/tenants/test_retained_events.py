"""Retained messages come out merged by publish time, each partition in order, and a
deadline stops the reading without skipping anything."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from tenants.retained_events import RetainedEvents


@dataclass
class Message:
    name: str
    published: int

    def publish_timestamp(self) -> int:
        return self.published


class Reader:
    def __init__(self, messages: list[Message]) -> None:
        self.messages = deque(messages)
        self.closed = False

    def has_message_available(self) -> bool:
        return bool(self.messages)

    def read_next(self, timeout_millis: int = 0) -> Message:
        return self.messages.popleft()

    def close(self) -> None:
        self.closed = True


class Client:
    def __init__(self, readers: dict[str, Reader]) -> None:
        self.readers = readers

    def create_reader(self, topic: str, start: Any, **kwargs: Any) -> Reader:
        return self.readers[topic]


def events(readers: dict[str, Reader]) -> RetainedEvents:
    return RetainedEvents(Client(readers), list(readers))


def test_partitions_are_merged_by_publish_time_each_in_its_order() -> None:
    raw = Reader([Message("r1", 10), Message("r2", 30), Message("r3", 31)])
    imported = Reader([Message("i1", 5), Message("i2", 20), Message("i3", 40)])
    retained = events({"raw-partition-0": raw, "import-partition-0": imported})
    assert [m.name for m in retained.drain()] == ["i1", "r1", "i2", "r2", "r3", "i3"]
    assert retained.at_end


def test_messages_stored_after_a_drain_come_with_the_next() -> None:
    raw = Reader([Message("r1", 10)])
    retained = events({"raw": raw})
    assert [m.name for m in retained.drain()] == ["r1"]
    raw.messages.append(Message("r2", 50))
    assert [m.name for m in retained.drain()] == ["r2"]


def test_a_deadline_stops_between_messages_and_the_rest_comes_later() -> None:
    raw = Reader([Message(f"r{n}", n) for n in range(5)])
    retained = events({"raw": raw})
    taken: list[str] = []
    for message in retained.drain(lambda: len(taken) >= 2):
        taken.append(message.name)
    assert taken == ["r0", "r1"]
    assert not retained.at_end
    assert [m.name for m in retained.drain()] == ["r2", "r3", "r4"]
    retained.close()
    assert raw.closed
