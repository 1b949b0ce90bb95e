"""What a tenant's Pulsar retention means for a rebuild from its topics; pure.

A rebuild (`tenants.rebuild`) recomputes only what the ``<tenant>/events`` namespace still
holds. Pulsar keeps an acknowledged message at least ``retentionTimeInMinutes`` and while
the topic stays within ``retentionSizeInMB``, dropping whole ledgers beyond either; ``-1``
is unbounded, ``0`` keeps nothing once the pipeline has acknowledged it. Plans set both
(`tenants.plans`: 1, 7 or 30 days), so a tenant older than its retention cannot be rebuilt
from its whole history (docs/pipeline.md, "Rebuilding a tenant's state").

`assess` reads that against what the tenant's ledger says it counted and says, before any
work, whether the rebuild will probably lose history, and why. After the replay the rebuild
checks the fact itself (ids the live ledger has that the replay did not find).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

UNBOUNDED = -1
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Retention:
    """A namespace's retention policy; `UNBOUNDED` for no limit."""

    minutes: int
    size_mb: int

    @classmethod
    def from_policies(cls, policies: Mapping[str, Any]) -> Retention:
        """From the admin API's namespace policies (no policy: the broker's default, 0)."""
        retention = policies.get("retention_policies") or {}
        return cls(
            int(retention.get("retentionTimeInMinutes", 0)),
            int(retention.get("retentionSizeInMB", 0)),
        )

    def describe(self) -> str:
        time = "unbounded time" if self.minutes == UNBOUNDED else _duration(self.minutes)
        size = "unbounded size" if self.size_mb == UNBOUNDED else f"{self.size_mb:,} MiB per topic"
        return f"{time}, {size}"


@dataclass(frozen=True)
class LedgerFacts:
    """What the live state says it counted: the counter, the ids the ledger still
    remembers (it forgets them `ledger_keep_ms` after their commit), the oldest commit."""

    counted: int
    remembered: int
    oldest_commit_ms: int | None


@dataclass(frozen=True)
class RetentionVerdict:
    retention: Retention
    # Why the rebuild will probably lose history; empty when it should not.
    warnings: tuple[str, ...]

    @property
    def loses_history(self) -> bool:
        return bool(self.warnings)


def assess(retention: Retention, facts: LedgerFacts, now_ms: int) -> RetentionVerdict:
    warnings: list[str] = []
    if retention.minutes == 0 or retention.size_mb == 0:
        warnings.append(
            "the events namespace has no retention: Pulsar deletes what the pipeline has "
            "acknowledged, so a rebuild finds only what was not consumed yet"
        )
        return RetentionVerdict(retention, tuple(warnings))
    if retention.minutes != UNBOUNDED:
        horizon_ms = now_ms - retention.minutes * MINUTE_MS
        forgotten = facts.counted - facts.remembered
        if forgotten > 0:
            warnings.append(
                f"{forgotten:,} counted events are older than the ledger's memory, which is at "
                f"least the retention ({_duration(retention.minutes)}): Pulsar may have "
                "deleted them, and a rebuild would lose them"
            )
        elif facts.oldest_commit_ms is not None and facts.oldest_commit_ms < horizon_ms:
            warnings.append(
                f"events counted since {_day(facts.oldest_commit_ms)} are older than the "
                f"retention ({_duration(retention.minutes)}, i.e. before {_day(horizon_ms)}): "
                "Pulsar may have deleted them, and a rebuild would lose them"
            )
    return RetentionVerdict(retention, tuple(warnings))


def _duration(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
