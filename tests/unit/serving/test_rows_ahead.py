"""Rows read ahead after a change: put back unless another change raced the read; bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from magnetar.db.change_stream import Change
from magnetar.db.user_snapshot import UserRows
from magnetar.personalization.state import UserActivity
from magnetar.serving.memory import ServingMemory
from magnetar.serving.rows_ahead import RowsAhead


def _rows(events: int) -> UserRows:
    return UserRows((), (), UserActivity(events, 0, 1, 2), (), items_complete=True)


def _live() -> ServingMemory:
    memory = ServingMemory()
    memory.set_live(True)
    return memory


def _until(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


class _Reads:
    """Answers each user with rows counting `events`; can hold a read until released."""

    def __init__(self, events: int = 1) -> None:
        self.events = events
        self.calls: list[tuple[str, list[str]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def __call__(self, tenant_id: str, user_ids: Sequence[str]) -> Mapping[str, UserRows]:
        self.calls.append((tenant_id, list(user_ids)))
        self.started.set()
        assert self.release.wait(5)
        if self.fail:
            raise OSError("database down")
        return {user: _rows(self.events) for user in user_ids}


def test_the_users_a_change_dropped_are_read_again_in_one_batch_per_tenant() -> None:
    memory, reads = _live(), _Reads(events=7)
    for user in ("ann", "bob"):
        memory.put_user("shop", user, _rows(1), memory.token())
    held = memory.invalidate(Change("shop", users=("ann", "bob", "cat")))
    assert held == ["ann", "bob"]  # cat was never held: nobody asked for it
    ahead = RowsAhead(memory, reads)
    ahead.schedule("shop", held)
    ahead.start()
    try:
        _until(lambda: memory.user("shop", "bob") is not None)
        assert reads.calls == [("shop", ["ann", "bob"])]
        assert memory.user("shop", "ann") == _rows(7)
        assert memory.user("other", "ann") is None
    finally:
        ahead.stop()


def test_rows_read_while_another_change_of_the_user_arrived_are_read_once_more() -> None:
    memory, reads = _live(), _Reads()
    reads.release.clear()
    ahead = RowsAhead(memory, reads)
    ahead.start()
    try:
        ahead.schedule("shop", ["ann"])
        assert reads.started.wait(5)
        # Committed during the read: the user was not held, so the change queues nothing.
        assert memory.invalidate(Change("shop", users=("ann",))) == []
        reads.events = 9
        reads.release.set()
        _until(lambda: memory.user("shop", "ann") is not None)
        assert memory.stats.refused_fills == 1
        assert memory.user("shop", "ann") == _rows(9)
        assert reads.calls == [("shop", ["ann"]), ("shop", ["ann"])]
    finally:
        ahead.stop()


def test_an_erased_user_is_not_held_and_a_failed_read_is_counted() -> None:
    memory = _live()
    erased = RowsAhead(
        memory, lambda tenant, users: {u: UserRows.from_rows((), (), None) for u in users}
    )
    erased.start()
    try:
        erased.schedule("shop", ["gone"])
        _until(lambda: erased.stats.users == 1)
        assert memory.user("shop", "gone") is None
    finally:
        erased.stop()
    reads = _Reads()
    reads.fail = True
    failing = RowsAhead(memory, reads)
    failing.start()
    try:
        failing.schedule("shop", ["ann", "bob"])
        _until(lambda: failing.stats.failed_users == 2)
        assert memory.user("shop", "ann") is None
    finally:
        failing.stop()


def test_past_the_bound_users_are_not_queued() -> None:
    ahead = RowsAhead(_live(), _Reads(), max_pending=2)
    ahead.schedule("shop", ["a", "b", "c"])
    ahead.schedule("shop", ["a"])  # already waiting: not counted twice
    ahead.schedule("other", ["d"])
    assert ahead.stats.skipped == 2


def test_tenants_take_turns_when_one_has_more_than_a_batch_waiting() -> None:
    memory, reads = _live(), _Reads()
    ahead = RowsAhead(memory, reads, batch=2)
    ahead.schedule("big", ["a", "b", "c", "d", "e"])
    ahead.schedule("small", ["z"])
    ahead.start()
    try:
        _until(lambda: len(reads.calls) == 4)
        assert [tenant for tenant, _ in reads.calls] == ["big", "small", "big", "big"]
    finally:
        ahead.stop()
