"""A tenant's clock: the instant serving decays scores to, per tenant; no I/O here.

`TenantClock` keeps each tenant's newest event time per process, read through `newest`. A
value is read again after a change of the tenant (`changed`), at most once per
`min_interval_ms`; while the stream is not followed (`live` false) every value older than that
is read again; a read that raced a change is read again next time. Given `refresh`, a held
value that is due is still served while `refresh` reads it again in the background, so no
request waits for that read; only a tenant with no value yet is read inline, and in
memory-only mode that read raises `NotInMemory` (docs/serving.md, "The tenant's clock")."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from magnetar.db.change_stream import Change
from magnetar.serving.memory import NotInMemory, in_memory_only
from magnetar.serving.shared_reads import Refresh


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


@dataclass(slots=True)
class _Entry:
    newest_ms: int | None
    read_at_ms: int
    # The change sequence number taken before the read.
    token: int


class TenantClock:
    def __init__(
        self,
        newest: Callable[[str], int | None],
        *,
        min_interval_ms: int = 1_000,
        max_tenants: int = 10_000,
        monotonic_ms: Callable[[], int] = _monotonic_ms,
        refresh: Refresh | None = None,
    ) -> None:
        self._newest = newest
        # Runs a job in the background, once per key while queued (a `BackgroundRefresh`).
        self._refresh = refresh
        self._min_interval_ms = min_interval_ms
        self._max_tenants = max_tenants
        self._monotonic_ms = monotonic_ms
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # When each tenant last changed (sequence numbers; bounded like the entries).
        self._changed: OrderedDict[str, int] = OrderedDict()
        self._floor = 0
        self._seq = 0
        self._live = False
        self._lock = threading.Lock()

    def now_ms(self, tenant_id: str, wall_ms: int) -> int:
        """The tenant's clock: its newest counted event time, at most `wall_ms`; `wall_ms`
        for a tenant with no state."""
        newest = self._current(tenant_id)
        return wall_ms if newest is None else min(newest, wall_ms)

    def _current(self, tenant_id: str) -> int | None:
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None:
                if not self._due(tenant_id, entry):
                    self._entries.move_to_end(tenant_id)
                    return entry.newest_ms
                if self._refresh is not None and self._live:
                    self._refresh(("clock", tenant_id), partial(self._read, tenant_id))
                    return entry.newest_ms
        if in_memory_only():
            raise NotInMemory(partial(self._read, tenant_id))
        return self._read(tenant_id)

    def _read(self, tenant_id: str) -> int | None:
        with self._lock:
            token = self._seq
        newest = self._newest(tenant_id)
        with self._lock:
            self._entries[tenant_id] = _Entry(newest, self._monotonic_ms(), token)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max_tenants:
                self._entries.popitem(last=False)
        return newest

    def _due(self, tenant_id: str, entry: _Entry) -> bool:
        if self._monotonic_ms() - entry.read_at_ms < self._min_interval_ms:
            return False
        return (
            not self._live
            or entry.token < self._floor
            or self._changed.get(tenant_id, -1) >= entry.token
        )

    # -- the change stream (`magnetar.db.change_listener.ChangeListener`'s callbacks) ----

    def changed(self, change: Change) -> None:
        """Any change of a tenant's state may carry a newer event."""
        with self._lock:
            self._changed[change.tenant_id] = self._seq
            self._changed.move_to_end(change.tenant_id)
            self._seq += 1
            while len(self._changed) > self._max_tenants:
                _, seq = self._changed.popitem(last=False)
                self._floor = max(self._floor, seq + 1)

    def set_live(self, live: bool) -> None:
        """Changes are heard only while live: every value is due again at both edges."""
        with self._lock:
            self._live = live
            self._seq += 1
            self._floor = self._seq
            self._changed.clear()
