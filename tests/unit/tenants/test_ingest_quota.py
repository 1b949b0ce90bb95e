"""Per-tenant ingest rate limits: a token bucket per tenant, refusing at once with a delay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.event_validation import EventLike
from magnetar.errors import ResourceExhausted
from tenants.ingest_quota import IngestQuota, IngestRateLimiter, RateLimitedSink, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Quotas:
    def __init__(self, quotas: dict[str, IngestQuota | None]) -> None:
        self.quotas = quotas
        self.lookups = 0

    def ingest_quota(self, tenant_id: str) -> IngestQuota | None:
        self.lookups += 1
        return self.quotas.get(tenant_id)


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(20, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(0.1)
    assert bucket.take(5, 0.5) == 0.0  # half a second refilled five
    assert bucket.take(1, 0.5) > 0


def test_a_batch_larger_than_the_burst_passes_when_full_and_leaves_debt() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(50, 0.0) == 0.0
    # 30 in debt: a full burst's worth again only after 5 seconds (30 + 20 at 10/s).
    assert bucket.take(20, 4.5) > 0
    assert bucket.take(20, 5.01) == 0.0


def test_the_limiter_refuses_over_quota_with_retry_information() -> None:
    clock = Clock()
    limiter = IngestRateLimiter(Quotas({"a": IngestQuota(100, 100)}), clock=clock)

    async def run() -> None:
        await limiter.admit("a", 100)
        with pytest.raises(ResourceExhausted) as refused:
            await limiter.admit("a", 10)
        assert refused.value.reason == "INGEST_RATE_EXCEEDED"
        assert refused.value.retry_after_s == pytest.approx(0.1)
        assert refused.value.metadata == {"events_per_second": "100", "burst": "100"}
        clock.now += 0.1
        await limiter.admit("a", 10)

    asyncio.run(run())


def test_tenants_are_limited_separately_and_tenants_without_quotas_not_at_all() -> None:
    limiter = IngestRateLimiter(Quotas({"a": IngestQuota(1, 1)}), clock=Clock())

    async def run() -> None:
        await limiter.admit("a", 1)
        with pytest.raises(ResourceExhausted):
            await limiter.admit("a", 1)
        for _ in range(100):
            await limiter.admit("legacy", 1000)

    asyncio.run(run())


def test_quotas_are_cached_and_a_changed_quota_applies_after_the_ttl() -> None:
    clock = Clock()
    source = Quotas({"a": IngestQuota(1, 1)})
    limiter = IngestRateLimiter(source, ttl_s=5, clock=clock)

    async def run() -> None:
        await asyncio.gather(*(limiter.admit("a", 0) for _ in range(10)))
        assert source.lookups == 1  # one lookup for concurrent misses
        await limiter.admit("a", 1)
        source.quotas["a"] = IngestQuota(1000, 1000)
        clock.now += 0.5
        with pytest.raises(ResourceExhausted):
            await limiter.admit("a", 1)  # still the cached 1/s
        clock.now += 5
        await limiter.admit("a", 900)
        assert source.lookups == 2

    asyncio.run(run())


def test_the_sink_publishes_only_what_was_admitted() -> None:
    published: list[int] = []

    class Inner:
        async def publish(
            self, tenant_id: str, events: Sequence[EventLike], timeout_s: float | None
        ) -> None:
            published.append(len(events))

    limiter = IngestRateLimiter(Quotas({"a": IngestQuota(10, 10)}), clock=Clock())
    sink = RateLimitedSink(Inner(), limiter)
    batch: list[EventLike] = [object()] * 10  # type: ignore[list-item]

    async def run() -> None:
        await sink.publish("a", batch, None)
        with pytest.raises(ResourceExhausted):
            await sink.publish("a", batch, None)

    asyncio.run(run())
    assert published == [10]
