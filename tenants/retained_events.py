"""A tenant's retained events, read from the start of its raw and import topics.

`RetainedEvents` opens a Reader on every partition of both topics at the earliest message
the broker still holds. A Reader is non-durable: it holds nothing back in the broker (no
backlog, no quota) and leaves nothing behind if the process dies. Messages come out merged
by publish time, each partition in its own order; one user's events travel on one partition
of each topic, so they come out in the order the broker stored them — the order the
pipeline met them in, to within how it interleaved its two topics.

`drain` reads until every reader says no message is available, asking the broker: when it
returns True, every message the broker had stored when it was called has been yielded.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pulsar

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.topics import TenantTopics

READ_TIMEOUT_MS = 10_000


def partition_topics(admin: PulsarAdmin, topics: TenantTopics) -> list[str]:
    """The partitions of the raw and import topics (a topic that does not exist has none:
    a tenant onboarded before imports may have no import topic)."""
    existing = set(admin.topics(topics.events_namespace))
    found: list[str] = []
    for topic in (topics.raw, topics.imports):
        partitions = admin.partitions(topic)
        if partitions:
            found += [f"{topic}-partition-{n}" for n in range(partitions)]
        elif topic in existing:
            found.append(topic)
    return found


class RetainedEvents:
    def __init__(self, client: pulsar.Client, topics: Sequence[str]) -> None:
        self.topics = list(topics)
        self._readers = [
            client.create_reader(topic, pulsar.MessageId.earliest, receiver_queue_size=2_000)
            for topic in self.topics
        ]
        # (publish time, reader, message): the next message of every reader that has one.
        self._heads: list[tuple[int, int, Any]] = []
        # Readers whose head was taken, and readers that said they were at their end.
        self._taken = set(range(len(self._readers)))
        self._at_end: set[int] = set()

    def drain(self, deadline: Callable[[], bool] = lambda: False) -> Iterator[Any]:
        """Messages until every reader is at the end (see the module doc), or until
        `deadline()` says to stop, checked between messages (the rest waits for the next
        call; nothing is skipped).

        A reader at its end is asked again only once no other has a message: whatever
        reaches it meanwhile was stored after every message still waiting, so the merge
        order holds, and the broker is asked once per reader per pass, not per message."""
        while True:
            self._refill(self._taken)
            self._taken = set()
            if not self._heads:
                again, self._at_end = self._at_end, set()
                self._refill(again)
                if not self._heads:
                    return
            if deadline():
                return
            _, index, message = heapq.heappop(self._heads)
            self._taken.add(index)
            yield message

    def _refill(self, indexes: set[int]) -> None:
        for index in sorted(indexes):
            reader = self._readers[index]
            if reader.has_message_available():
                message = reader.read_next(timeout_millis=READ_TIMEOUT_MS)
                heapq.heappush(self._heads, (message.publish_timestamp(), index, message))
            else:
                self._at_end.add(index)

    @property
    def at_end(self) -> bool:
        """No message read and not yet yielded (true after a `drain` that ran to the end)."""
        return not self._heads

    def close(self) -> None:
        for reader in self._readers:
            # On the way out: a reader that cannot close has nothing left to lose.
            with contextlib.suppress(Exception):
                reader.close()


def seconds_left(limit_s: float) -> Callable[[], bool]:
    """A `deadline` for `RetainedEvents.drain`: true once `limit_s` have passed."""
    until = time.monotonic() + limit_s
    return lambda: time.monotonic() >= until
