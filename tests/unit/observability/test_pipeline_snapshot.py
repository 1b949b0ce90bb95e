from __future__ import annotations

from magnetar.observability.pipeline_snapshot import PipelineSnapshot, StageHealth, status_row

HEALTHY = {"pipeline": StageHealth(1, 1, 0)}


def _snapshot(at_s: float, accepted: int, counted: int, **kw: object) -> PipelineSnapshot:
    fields: dict[str, object] = {
        "tenant": "acme",
        "at_s": at_s,
        "accepted_total": accepted,
        "counted_total": counted,
        "dead_lettered_total": 2,
        "backlog": {"pipeline": 12},
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
    stopped = status_row(_snapshot(10.0, 0, 0, stages={"pipeline": StageHealth(0, 1, 3)}), None)
    assert not stopped.healthy
    assert stopped.errors == 3
    assert "pipeline:0/1" in stopped.functions
    absent = status_row(_snapshot(10.0, 0, 0, stages={}), None)
    assert not absent.healthy and "pipeline:absent" in absent.functions


def test_a_counter_reset_never_shows_a_negative_rate() -> None:
    row = status_row(_snapshot(12.0, 10, 10), _snapshot(10.0, 500, 500))
    assert row.accepted_per_s == 0 and row.counted_per_s == 0
