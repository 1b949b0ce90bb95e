"""Bounded retries: only the transient failure is retried, and only within the budget."""

from __future__ import annotations

import pytest

from magnetar.retry import Backoff, retry_transient


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def _transient(error: Exception) -> bool:
    return isinstance(error, TimeoutError)


def test_delays_grow_to_the_cap_and_fit_the_budget() -> None:
    assert Backoff(first_s=0.2, factor=2, max_s=1.0, budget_s=4.0).delays() == [
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    assert Backoff(first_s=1.0, budget_s=0.5).delays() == []


def test_a_transient_failure_is_retried_with_backoff_until_the_call_succeeds() -> None:
    call = Flaky([TimeoutError(), TimeoutError()])
    slept: list[float] = []
    assert retry_transient(call, _transient, Backoff(first_s=0.1), sleep=slept.append) == "done"
    assert call.calls == 3 and slept == [0.1, 0.2]


def test_any_other_failure_is_raised_at_once() -> None:
    call = Flaky([ValueError("bad")])
    slept: list[float] = []
    with pytest.raises(ValueError, match="bad"):
        retry_transient(call, _transient, Backoff(), sleep=slept.append)
    assert call.calls == 1 and slept == []


def test_past_the_budget_the_transient_failure_reaches_the_caller() -> None:
    backoff = Backoff(first_s=0.1, factor=1, budget_s=0.35)
    call = Flaky([TimeoutError() for _ in range(10)])
    slept: list[float] = []
    with pytest.raises(TimeoutError):
        retry_transient(call, _transient, backoff, sleep=slept.append)
    assert call.calls == 4 and slept == [0.1, 0.1, 0.1]
