from __future__ import annotations

from magnetar.observability.pipeline_snapshot import PipelineSnapshot, StageHealth, status_row

HEALTHY = {s: StageHealth(1, 1, 0) for s in ("dedupe", "enrich", "materialize")}


def _snapshot(at_s: float, accepted: int, counted: int, **kw: object) -> PipelineSnapshot:
    fields: dict[str, object] = {
        "tenant": "acme",
        "at_s": at_s,
        "accepted_total": accepted,
        "counted_total": counted,
        "dead_lettered_total": 2,
        "backlog": {"dedupe": 5, "enrich": 0, "materialize": 7},
        "freshness_p50_ms": 12.0,
        "freshness_p99_ms": 80.0,
        "stages": HEALTHY,
    }
    fields.update(kw)
    return PipelineSnapshot(**fields)  # type: ignore[arg-type]


def test_rates_come_from_the_difference_between_two_snapshots() -> None:
    row = status_row(_snapshot(12.0, 3_000, 2_500), _snapshot(10.0, 1_000, 1_000))
    assert row.accepted_per_s == 1_000
    assert row.counted_per_s == 750
    assert row.backlog == 12
    assert row.healthy


def test_first_snapshot_has_no_rates_yet() -> None:
    row = status_row(_snapshot(10.0, 1_000, 900), None)
    assert row.accepted_per_s is None and row.counted_per_s is None


def test_a_missing_or_stopped_function_makes_the_tenant_unhealthy_and_counts_errors() -> None:
    stages = {"dedupe": StageHealth(0, 1, 3), "enrich": StageHealth(1, 1, 2)}
    row = status_row(_snapshot(10.0, 0, 0, stages=stages), None)
    assert not row.healthy
    assert row.errors == 5
    assert "materialize:absent" in row.functions
    assert "dedupe:0/1" in row.functions


def test_a_counter_reset_never_shows_a_negative_rate() -> None:
    row = status_row(_snapshot(12.0, 10, 10), _snapshot(10.0, 500, 500))
    assert row.accepted_per_s == 0 and row.counted_per_s == 0
