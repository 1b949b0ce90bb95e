"""Bounded retries of a failure known to be transient, with exponential backoff.

`retry_transient` calls again only while the failure is the kind named transient and the time
budget lasts; any other failure, or the transient one past the budget, reaches the caller as
it was raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of `first_s`, each next one `factor` times longer up to `max_s`, for at most `budget_s` in all."""

    first_s: float = 0.2
    factor: float = 2.0
    max_s: float = 2.0
    budget_s: float = 30.0

    def delays(self) -> list[float]:
        """Every wait, in order, that fits in the budget."""
        delays: list[float] = []
        delay, spent = self.first_s, 0.0
        while spent + delay <= self.budget_s:
            delays.append(delay)
            spent += delay
            delay = min(delay * self.factor, self.max_s)
        return delays


def retry_transient(
    call: Callable[[], T],
    transient: Callable[[Exception], bool],
    backoff: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`'s result, calling again after each transient failure while `backoff` lasts."""
    for delay in backoff.delays():
        try:
            return call()
        except Exception as error:
            if not transient(error):
                raise
        sleep(delay)
    return call()
