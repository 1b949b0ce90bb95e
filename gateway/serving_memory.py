"""This process's serving memory and the change stream that keeps it current.

One `ServingMemory` and one `ChangeListener` per gateway process, shared by the services
that read it (PersonalizationService) and write what it holds (UserService). Memory is
served only while the listener is connected (`ServingMemory.live`); its size and hit rate
are Prometheus metrics (`magnetar_serving_memory_*`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from magnetar.db.change_listener import ChangeListener
from magnetar.db.change_stream import Change
from magnetar.serving.memory import ServingMemory
from magnetar.serving.rows_ahead import ReadRows, RowsAhead

# How long DeleteUser waits for its own change to come back on the stream, then how much
# longer it gives the other processes' listeners, woken by the same commit, to act on it.
ERASURE_ECHO_S = 2.0
ERASURE_SPREAD_S = 0.05


class ChangeFollower(Protocol):
    """What else keeps itself current from the stream (`magnetar.serving.tenant_clock`)."""

    def changed(self, change: Change) -> None: ...

    def set_live(self, live: bool) -> None: ...


class MemoryFeed:
    def __init__(
        self,
        database_url: str,
        memory: ServingMemory | None = None,
        read_rows: ReadRows | None = None,
    ) -> None:
        self.memory = memory or ServingMemory()
        # With `read_rows`, the users a change drops are read again at once (rows_ahead).
        self.rows_ahead = None if read_rows is None else RowsAhead(self.memory, read_rows)
        self._followers: list[ChangeFollower] = []
        self.listener = ChangeListener(
            database_url, on_change=self._on_change, on_reset=self._on_reset
        )
        self._started = False

    def follow(self, follower: ChangeFollower) -> None:
        """Hand `follower` every change and reset too (call before `start`)."""
        self._followers.append(follower)

    def _on_change(self, change: Change) -> None:
        held = self.memory.invalidate(change)
        if self.rows_ahead is not None:
            self.rows_ahead.schedule(change.tenant_id, held)
        for follower in self._followers:
            follower.changed(change)

    def _on_reset(self, live: bool) -> None:
        self.memory.set_live(live)
        for follower in self._followers:
            follower.set_live(live)

    def start(self) -> None:
        if not self._started:
            self._started = True
            if self.rows_ahead is not None:
                self.rows_ahead.start()
            self.listener.start()

    def stop(self) -> None:
        if self._started:
            self.listener.stop()
            if self.rows_ahead is not None:
                self.rows_ahead.stop()


class _MemoryCollector(Collector):
    def __init__(self, memory: ServingMemory, rows_ahead: RowsAhead | None) -> None:
        self._memory = memory
        self._rows_ahead = rows_ahead

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._memory.stats
        lookups = CounterMetricFamily(
            "magnetar_serving_memory_lookups", "User lookups in serving memory", labels=["result"]
        )
        lookups.add_metric(["hit"], stats.hits)
        lookups.add_metric(["miss"], stats.misses)
        yield lookups
        yield CounterMetricFamily(
            "magnetar_serving_memory_refused_fills",
            "Reads not kept because a change arrived while they ran",
            value=stats.refused_fills,
        )
        yield CounterMetricFamily(
            "magnetar_serving_memory_changes",
            "Changes heard on the stream",
            value=stats.invalidations,
        )
        size = GaugeMetricFamily(
            "magnetar_serving_memory_entries", "Entries held", labels=["tenant", "kind"]
        )
        for tenant, (users, items, rankings) in self._memory.sizes().items():
            size.add_metric([tenant, "user"], users)
            size.add_metric([tenant, "item"], items)
            size.add_metric([tenant, "ranking"], rankings)
        yield size
        ranked = CounterMetricFamily(
            "magnetar_serving_rankings",
            "Recommend requests answered from a ranking made ahead (hit) or ranked anew (miss)",
            labels=["result"],
        )
        ranked.add_metric(["hit"], stats.ranked_hits)
        ranked.add_metric(["miss"], stats.ranked_misses)
        yield ranked
        if self._rows_ahead is not None:
            ahead = self._rows_ahead.stats
            read = CounterMetricFamily(
                "magnetar_serving_rows_ahead_users",
                "Users a change dropped, read again before their next request (read), not "
                "read ahead because the queue was full (skipped), or lost to a failed read",
                labels=["result"],
            )
            read.add_metric(["read"], ahead.users)
            read.add_metric(["skipped"], ahead.skipped)
            read.add_metric(["failed"], ahead.failed_users)
            yield read
        yield GaugeMetricFamily(
            "magnetar_serving_memory_live",
            "1 while the change stream is connected and memory serves",
            value=1.0 if self._memory.live else 0.0,
        )


def register_metrics(feed: MemoryFeed, registry: CollectorRegistry) -> None:
    registry.register(_MemoryCollector(feed.memory, feed.rows_ahead))
