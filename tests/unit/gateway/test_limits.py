"""Pending-send budget and per-tenant concurrency: bounded, fair, never leaking."""

from __future__ import annotations

import asyncio

import pytest

from gateway.limits import ConcurrencyLimiter, PendingBudget
from magnetar.errors import ResourceExhausted


def test_budget_admits_until_full_then_refuses_with_a_retry_delay() -> None:
    async def run() -> None:
        budget = PendingBudget(10)
        await budget.acquire(6, 0.01)
        await budget.acquire(4, 0.01)
        with pytest.raises(ResourceExhausted) as refused:
            await budget.acquire(1, 0.01)
        assert refused.value.retry_after_s is not None
        assert refused.value.metadata["max_pending_events"] == "10"
        assert budget.in_use == 10

    asyncio.run(run())


def test_a_waiter_is_admitted_when_room_is_released() -> None:
    async def run() -> int:
        budget = PendingBudget(10)
        await budget.acquire(10, 0.01)
        waiter = asyncio.ensure_future(budget.acquire(5, 1.0))
        await asyncio.sleep(0.01)
        budget.release(5)
        await waiter
        return budget.in_use

    assert asyncio.run(run()) == 10


def test_waiters_are_served_in_arrival_order() -> None:
    async def run() -> list[str]:
        budget = PendingBudget(10)
        await budget.acquire(10, 0.01)
        order: list[str] = []

        async def want(name: str, count: int) -> None:
            await budget.acquire(count, 1.0)
            order.append(name)

        big = asyncio.ensure_future(want("big", 8))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(want("small", 1))
        await asyncio.sleep(0.01)
        budget.release(2)  # room for "small" but it must not overtake "big"
        await asyncio.sleep(0.01)
        assert order == []
        budget.release(8)
        await asyncio.gather(big, small)
        return order

    assert asyncio.run(run()) == ["big", "small"]


def test_a_cancelled_waiter_takes_nothing() -> None:
    async def run() -> int:
        budget = PendingBudget(4)
        await budget.acquire(4, 0.01)
        waiter = asyncio.ensure_future(budget.acquire(2, 1.0))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        budget.release(4)
        return budget.in_use

    assert asyncio.run(run()) == 0


def test_concurrency_is_limited_per_tenant_and_slots_are_returned() -> None:
    async def run() -> None:
        limiter = ConcurrencyLimiter(2)
        async with limiter.slot("a"), limiter.slot("a"):
            with pytest.raises(ResourceExhausted):
                async with limiter.slot("a"):
                    pass
            async with limiter.slot("b"):  # another tenant is not affected
                assert limiter.active("b") == 1
        assert limiter.active("a") == 0

    asyncio.run(run())
