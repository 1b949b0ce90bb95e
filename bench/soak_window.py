"""One period of a soak run: what the load clients saw, and the table row it becomes.

Pure: the soak's loops count into the current `Window`; at each sample the window is closed
and `row` joins it with the pipeline's figures (from `magnetar.observability.collect`) into
the row printed and saved. Latencies are kept per window only, so a run of hours holds one
minute of them at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.report import percentile

# fresh = freshness (gateway acceptance → commit), reco = Recommend, catalog = upserts in the
# window, onboarded = tenants onboarded and removed / tried (seconds to the first
# recommendation), DLQ = events dead-lettered since the tenant was made.
COLUMNS = (
    "minute",
    "ingest/s",
    "counted/s",
    "backlog",
    "fresh p50 ms",
    "fresh p99 ms",
    "reco/s",
    "reco p50 ms",
    "reco p99 ms",
    "catalog",
    "onboarded",
    "errors",
    "DLQ",
    "load",
)


@dataclass(frozen=True)
class Onboarding:
    """One tenant onboarded and removed: seconds from CreateTenant to its event in a
    recommendation, seconds DeleteTenant took; None where the step was not reached; `error`
    empty when all went well."""

    tenant: str
    created_s: float | None = None
    reflected_s: float | None = None
    deleted_s: float | None = None
    error: str = ""
    # RSS of the tenant's pipeline instance(s) when its event was recommended.
    instance_mb: float | None = None


@dataclass(frozen=True)
class PipelineFigures:
    """The soak tenant's pipeline at the end of a window (a `PipelineSnapshot`'s figures)."""

    counted_total: int
    backlog: int
    dead_lettered_total: int
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    function_errors: int


@dataclass
class Window:
    started_s: float
    ingested: int = 0
    recommend_ms: list[float] = field(default_factory=list)
    catalog_upserts: int = 0
    onboardings: list[Onboarding] = field(default_factory=list)
    # "<call> <status code>" → count; calls not started because too many were in flight
    # count as "<call> not sent".
    errors: Counter[str] = field(default_factory=Counter)

    def failed(self, call: str, code: str) -> None:
        self.errors[f"{call} {code}"] += 1


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _onboarded_cell(onboardings: Sequence[Onboarding]) -> str:
    done = [o for o in onboardings if o.reflected_s is not None and o.deleted_s is not None]
    if not onboardings:
        return ""
    seconds = ",".join(f"{o.reflected_s:.1f}s" for o in done)
    return f"{len(done)}/{len(onboardings)}" + (f" {seconds}" if seconds else "")


def row(
    window: Window,
    ended_s: float,
    run_started_s: float,
    pipeline: PipelineFigures | None,
    counted_before: int | None,
    load: float,
) -> dict[str, Any]:
    """The window as a row: per-second rates over its length, the pipeline's figures when
    they could be read (counted/s needs the previous window's count too)."""
    seconds = ended_s - window.started_s
    counted = (
        _rate(pipeline.counted_total - counted_before, seconds)
        if pipeline is not None and counted_before is not None
        else None
    )
    onboarding_errors = sum(1 for o in window.onboardings if o.error)
    return {
        "minute": round((ended_s - run_started_s) / 60, 1),
        "ingest/s": _rate(window.ingested, seconds),
        "counted/s": counted,
        "backlog": pipeline.backlog if pipeline else None,
        "fresh p50 ms": pipeline.freshness_p50_ms if pipeline else None,
        "fresh p99 ms": pipeline.freshness_p99_ms if pipeline else None,
        "reco/s": _rate(len(window.recommend_ms), seconds),
        "reco p50 ms": percentile(window.recommend_ms, 50) if window.recommend_ms else None,
        "reco p99 ms": percentile(window.recommend_ms, 99) if window.recommend_ms else None,
        "catalog": window.catalog_upserts,
        "onboarded": _onboarded_cell(window.onboardings),
        "errors": sum(window.errors.values()) + onboarding_errors,
        "DLQ": pipeline.dead_lettered_total if pipeline else None,
        "load": load,
        # For the JSON: which calls failed how, each onboarding, the functions' exceptions.
        "errors by call": dict(window.errors),
        "onboardings": [asdict(o) for o in window.onboardings],
        "function exceptions": pipeline.function_errors if pipeline else None,
        "seconds": round(seconds, 1),
    }
