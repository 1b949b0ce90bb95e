"""Bounds that keep one tenant from exhausting the gateway: pending sends and concurrency.

Pure asyncio, no I/O. When a bound is reached the caller gets `ResourceExhausted` with a
retry delay rather than an unbounded queue: a client that backs off is served, a client
that floods is refused quickly instead of making everyone's latency grow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from magnetar.errors import ResourceExhausted


class PendingBudget:
    """Events handed to Pulsar and not yet settled, at most `capacity` at a time.

    Waiters are served first come, first served, so a large batch is not starved by a
    stream of small ones.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, count: int, wait_s: float) -> None:
        """Reserve `count`; wait up to `wait_s` for room, then ResourceExhausted."""
        if count > self.capacity:
            raise ValueError(f"{count} exceeds the budget's capacity {self.capacity}")
        if not self._waiters and self.in_use + count <= self.capacity:
            self.in_use += count
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (count, granted)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(granted), wait_s)
        except asyncio.CancelledError:
            # The caller went away: give back what may have been granted meanwhile.
            if granted.done():
                self.release(count)
            else:
                self._waiters.remove(waiter)
            raise
        except TimeoutError:
            if granted.done():  # granted in the same instant: keep it
                return
            self._waiters.remove(waiter)
            raise ResourceExhausted(
                f"too many events pending for this tenant (bound {self.capacity}); retry shortly",
                retry_after_s=0.5,
                reason="PENDING_SENDS_FULL",
                metadata={"max_pending_events": str(self.capacity)},
            ) from None

    def release(self, count: int) -> None:
        self.in_use -= count
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            wanted, granted = self._waiters.popleft()
            self.in_use += wanted
            granted.set_result(None)


class ConcurrencyLimiter:
    """At most `limit` calls in progress per key (a tenant, or the whole process); the next
    one is refused. `holder` and `reason` word the refusal."""

    def __init__(
        self,
        limit: int,
        *,
        holder: str = "this tenant",
        reason: str = "TOO_MANY_CONCURRENT_CALLS",
    ) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._holder = holder
        self._reason = reason
        self._active: dict[str, int] = {}

    def active(self, key: str) -> int:
        return self._active.get(key, 0)

    def enter(self, key: str) -> None:
        """Take a slot of `key` (ResourceExhausted when none is free); `leave` gives it back."""
        current = self._active.get(key, 0)
        if current >= self.limit:
            raise ResourceExhausted(
                f"more than {self.limit} calls in progress for {self._holder}; retry shortly",
                retry_after_s=0.1,
                reason=self._reason,
                metadata={"max_concurrent_calls": str(self.limit)},
            )
        self._active[key] = current + 1

    def leave(self, key: str) -> None:
        remaining = self._active[key] - 1
        if remaining:
            self._active[key] = remaining
        else:
            del self._active[key]

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        self.enter(key)
        try:
            yield
        finally:
            self.leave(key)
