"""Per-tenant ingest rate limits at the gateway: a token bucket per tenant, from its quotas.

A call whose events do not fit the bucket (`ingest_burst`, refilled at
`ingest_events_per_second`) is refused at once with RESOURCE_EXHAUSTED and a RetryInfo of
when they would fit; a batch larger than the burst passes a full bucket and leaves it in
debt. Each of `replicas` gateway processes enforces 1/replicas of the quota
(docs/tenants.md, "Quotas and replicas"). Quotas are cached `ttl_s` and served stale
`stale_s` while PostgreSQL fails; a tenant without recorded quotas is not limited here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.answer_cache import AnswerCache, CachedLookup
from gateway.event_validation import EventLike
from gateway.ingestion import EventSink
from magnetar.errors import ResourceExhausted
from tenants.model import IngestQuota


class QuotaSource(Protocol):
    """The ingest quota of a tenant, None for none; blocking (run in a worker thread)."""

    def ingest_quota(self, tenant_id: str) -> IngestQuota | None: ...


class TokenBucket:
    """Refills continuously at `rate` per second up to `burst`; pure, clock given by caller."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._updated = now

    def reshape(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = min(self.tokens, burst)

    def take(self, count: int, now: float) -> float:
        """Take `count` and return 0.0, or take nothing and return the seconds to wait."""
        self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
        self._updated = now
        needed = min(float(count), self.burst)
        if self.tokens >= needed:
            self.tokens -= count
            return 0.0
        return (needed - self.tokens) / self.rate


class IngestRateLimiter:
    def __init__(
        self,
        source: QuotaSource,
        *,
        replicas: int = 1,
        ttl_s: float = 5.0,
        stale_s: float = 600.0,
        max_tenants: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if replicas <= 0:
            raise ValueError("replicas must be positive")
        self._source = source
        self._replicas = replicas
        self._clock = clock
        cache: AnswerCache[str, IngestQuota | None] = AnswerCache(max_tenants, ttl_s, stale_s)
        self._quotas: CachedLookup[str, IngestQuota | None] = CachedLookup(
            (cache,), lambda _: cache, run=asyncio.to_thread, clock=clock, what="ingest quota"
        )
        self._buckets: dict[str, TokenBucket] = {}

    async def _quota(self, tenant_id: str) -> IngestQuota | None:
        return await self._quotas.get(tenant_id, lambda: self._source.ingest_quota(tenant_id))

    async def admit(self, tenant_id: str, count: int) -> None:
        """Return if `count` events fit the tenant's rate; ResourceExhausted otherwise."""
        quota = await self._quota(tenant_id)
        if quota is None:
            return
        now = self._clock()
        # This replica's share; a burst of at least one event, so any quota admits something.
        rate = quota.events_per_second / self._replicas
        burst = max(1.0, quota.burst / self._replicas)
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = TokenBucket(rate, burst, now)
        elif (bucket.rate, bucket.burst) != (rate, burst):
            bucket.reshape(rate, burst)
        wait_s = bucket.take(count, now)
        if wait_s > 0:
            raise ResourceExhausted(
                f"the tenant's ingest quota is {quota.events_per_second} events/s "
                f"(burst {quota.burst}) across {self._replicas} gateway replica(s); "
                f"retry in {wait_s:.3f} s",
                retry_after_s=wait_s,
                reason="INGEST_RATE_EXCEEDED",
                metadata={
                    "events_per_second": str(quota.events_per_second),
                    "burst": str(quota.burst),
                    "gateway_replicas": str(self._replicas),
                },
            )


class RateLimitedSink:
    """An `EventSink` that admits a batch through the tenant's bucket before publishing it."""

    def __init__(self, inner: EventSink, limiter: IngestRateLimiter) -> None:
        self._inner = inner
        self._limiter = limiter

    async def publish(
        self, tenant_id: str, events: Sequence[EventLike], timeout_s: float | None
    ) -> None:
        await self._limiter.admit(tenant_id, len(events))
        await self._inner.publish(tenant_id, events, timeout_s)
