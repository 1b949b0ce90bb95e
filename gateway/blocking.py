"""Blocking domain calls (PostgreSQL, Pulsar's synchronous client) on a worker thread.

Under overload, calls wait for a worker; a call whose caller has already given up must
not then be served anyway: it would spend the worker on an answer nobody reads while the
calls behind it time out too, until nothing is answered in time at all. Each call checks
the caller's deadline when its worker picks it up, and is dropped if the deadline passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from magnetar.errors import DeadlineExceeded

T = TypeVar("T")


async def in_thread(context: Any, call: Callable[..., T], *args: Any) -> T:
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining

    def unless_expired() -> T:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded("the deadline passed while the call waited for a worker")
        return call(*args)

    # to_thread, not a bare executor: the worker sees the RPC's context variables.
    return await asyncio.to_thread(unless_expired)
