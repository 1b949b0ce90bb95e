"""A blocking call is dropped when its caller's deadline passed before a worker took it."""

from __future__ import annotations

import asyncio

import pytest

from gateway.blocking import in_thread
from magnetar.errors import DeadlineExceeded


class Context:
    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining

    def time_remaining(self) -> float | None:
        return self._remaining


def test_a_call_with_time_left_or_without_a_deadline_runs() -> None:
    assert asyncio.run(in_thread(Context(5.0), lambda a, b: a + b, 1, 2)) == 3
    assert asyncio.run(in_thread(Context(None), lambda: "ran")) == "ran"


def test_a_call_whose_deadline_passed_is_not_run() -> None:
    ran: list[bool] = []
    with pytest.raises(DeadlineExceeded):
        asyncio.run(in_thread(Context(0.0), lambda: ran.append(True)))
    assert ran == []
