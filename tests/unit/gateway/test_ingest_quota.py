"""Per-tenant ingest rate limits: a token bucket per tenant, refusing at once with a delay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.event_validation import EventLike
from gateway.ingest_quota import IngestRateLimiter, RateLimitedSink, TokenBucket
from magnetar.errors import ResourceExhausted, Unavailable
from tenants.model import IngestQuota


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Quotas:
    def __init__(self, quotas: dict[str, IngestQuota | None]) -> None:
        self.quotas = quotas
        self.lookups = 0
        # PostgreSQL down: every lookup fails as the store's port says it does.
        self.failing = False

    def ingest_quota(self, tenant_id: str) -> IngestQuota | None:
        self.lookups += 1
        if self.failing:
            raise Unavailable("PostgreSQL is unavailable", reason="DATABASE_UNAVAILABLE")
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
        assert refused.value.metadata == {
            "events_per_second": "100",
            "burst": "100",
            "gateway_replicas": "1",
        }
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


def test_when_postgresql_fails_the_last_quota_is_used_for_ten_minutes() -> None:
    clock = Clock()
    source = Quotas({"a": IngestQuota(100, 100), "legacy": None})
    limiter = IngestRateLimiter(source, ttl_s=5, stale_s=600, clock=clock)

    async def run() -> None:
        await limiter.admit("a", 1)
        await limiter.admit("legacy", 1)
        source.failing = True
        clock.now += 6  # past the TTL: the lookup fails, the last answer still holds
        await limiter.admit("a", 50)
        with pytest.raises(ResourceExhausted):
            await limiter.admit("a", 100)  # and is still enforced
        await limiter.admit("legacy", 10_000)
        lookups = source.lookups
        for _ in range(20):
            await limiter.admit("a", 0)
        # A failed lookup is not retried on every call, only once per TTL.
        assert source.lookups == lookups
        with pytest.raises(Unavailable):
            await limiter.admit("never-seen", 1)  # nothing to fall back on
        clock.now += 600
        with pytest.raises(Unavailable):
            await limiter.admit("a", 1)  # beyond the bound: the outage shows
        source.failing = False
        clock.now += 5
        await limiter.admit("a", 1)

    asyncio.run(run())


def test_each_replica_admits_its_share_of_the_quota() -> None:
    clock = Clock()
    source = Quotas({"a": IngestQuota(100, 200)})
    replicas = [IngestRateLimiter(source, replicas=4, clock=clock) for _ in range(4)]

    async def run() -> int:
        admitted = 0
        for limiter in replicas:  # traffic spread evenly over the four
            for _ in range(100):
                try:
                    await limiter.admit("a", 1)
                    admitted += 1
                except ResourceExhausted as refused:
                    assert refused.metadata["gateway_replicas"] == "4"
        clock.now += 1.0  # one second: each replica refills 100 / 4
        for limiter in replicas:
            for _ in range(100):
                try:
                    await limiter.admit("a", 1)
                    admitted += 1
                except ResourceExhausted:
                    pass
        return admitted

    # The tenant's burst (200) and one second of its rate (100), not four times each.
    assert asyncio.run(run()) == 300
