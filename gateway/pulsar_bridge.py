"""Pulsar's callbacks, delivered to asyncio once per batch.

pulsar-client calls a send callback on its own I/O thread for every message. Waking the
event loop for each (`call_soon_threadsafe` per message) costs a loop iteration and a
self-pipe write per event; `BatchAck` counts the callbacks on Pulsar's thread under a lock
and wakes the loop twice at most: on the first failure (so the caller can answer at once)
and when the last callback has arrived (so the pending-send budget is released only when
Pulsar has really let go of every message).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


class PublishFailed(Exception):
    """Pulsar answered a send with an error result (kept as given, e.g. `Result.Timeout`)."""

    def __init__(self, result: Any) -> None:
        super().__init__(f"Pulsar did not acknowledge a message: {result}")
        self.result = result


class BatchAck:
    """Completion of `count` sends: `future` resolves when all are acknowledged, or fails
    with `PublishFailed` on the first error. `on_settled` runs on the loop once every send
    has had its callback, success or not."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        count: int,
        *,
        ok: Any,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        if count <= 0:
            raise ValueError("a batch has at least one message")
        self._loop = loop
        self._ok = ok
        self._remaining = count
        self._failed = False
        self._lock = threading.Lock()
        self._on_settled = on_settled
        self.future: asyncio.Future[None] = loop.create_future()

    def callback(self, result: Any, _message_id: Any = None) -> None:
        """Pulsar's send callback; runs on Pulsar's thread."""
        with self._lock:
            self._remaining -= 1
            first_failure = result != self._ok and not self._failed
            if first_failure:
                self._failed = True
            settled = self._remaining == 0
        if first_failure:
            self._wake(self._fail, result)
        if settled:
            self._wake(self._settle)

    def abandon(self, count: int) -> None:
        """`count` sends were never handed to Pulsar (it raised): no callback will come."""
        for _ in range(count):
            self.callback(_Abandoned)

    def _wake(self, fn: Callable[..., None], *args: Any) -> None:
        # RuntimeError: the loop is closed (shutting down), so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    def _fail(self, result: Any) -> None:
        if not self.future.done():
            self.future.set_exception(PublishFailed(result))

    def _settle(self) -> None:
        if not self.future.done():
            self.future.set_result(None)
        if self._on_settled is not None:
            self._on_settled()


class _Abandoned:
    """The result recorded for sends that never reached Pulsar."""
