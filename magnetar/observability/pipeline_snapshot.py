"""One tenant's pipeline at one instant, and what two instants say about rates (pure).

The collector (`magnetar.observability.collect`) fills `PipelineSnapshot` from the Pulsar
admin API and PostgreSQL; everything here is arithmetic on snapshots, unit-tested without
I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from magnetar.topics import PIPELINE_FUNCTIONS

STAGES = PIPELINE_FUNCTIONS


@dataclass(frozen=True)
class StageHealth:
    running: int
    instances: int
    errors: int

    @property
    def healthy(self) -> bool:
        return self.instances > 0 and self.running == self.instances


@dataclass(frozen=True)
class PipelineSnapshot:
    tenant: str
    at_s: float
    accepted_total: int  # messages in on the raw topic since it was created
    counted_total: int  # rows in the processed-event ledger
    dead_lettered_total: int  # messages in on the DLQ topic
    backlog: Mapping[str, int]  # subscription (stage) → messages not yet acknowledged
    freshness_p50_ms: float | None  # over the last minute, from the ledger
    freshness_p99_ms: float | None
    stages: Mapping[str, StageHealth] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusRow:
    tenant: str
    accepted_per_s: float | None
    counted_per_s: float | None
    backlog: int
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    dead_lettered: int
    errors: int
    functions: str
    healthy: bool


def status_row(current: PipelineSnapshot, previous: PipelineSnapshot | None) -> StatusRow:
    """The view's row for a tenant: rates need the previous snapshot of the same tenant."""
    accepted_rate = counted_rate = None
    if previous is not None and current.at_s > previous.at_s:
        elapsed = current.at_s - previous.at_s
        accepted_rate = max(0, current.accepted_total - previous.accepted_total) / elapsed
        counted_rate = max(0, current.counted_total - previous.counted_total) / elapsed
    stages = [current.stages.get(stage) for stage in STAGES]
    healthy = all(stage is not None and stage.healthy for stage in stages)
    functions = " ".join(
        f"{name}:{stage.running}/{stage.instances}" if stage else f"{name}:absent"
        for name, stage in zip(STAGES, stages, strict=True)
    )
    return StatusRow(
        tenant=current.tenant,
        accepted_per_s=accepted_rate,
        counted_per_s=counted_rate,
        backlog=sum(current.backlog.values()),
        freshness_p50_ms=current.freshness_p50_ms,
        freshness_p99_ms=current.freshness_p99_ms,
        dead_lettered=current.dead_lettered_total,
        errors=sum(stage.errors for stage in stages if stage is not None),
        functions=functions,
        healthy=healthy,
    )
