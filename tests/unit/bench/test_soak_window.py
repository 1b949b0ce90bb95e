"""A soak window becomes a row: rates over its length, the pipeline's figures, errors."""

from __future__ import annotations

from bench.soak_window import COLUMNS, Onboarding, PipelineFigures, Window, row

FIGURES = PipelineFigures(
    counted_total=19_000,
    backlog=120,
    dead_lettered_total=2,
    freshness_p50_ms=850.0,
    freshness_p99_ms=2_400.0,
    function_errors=1,
)


def test_a_window_becomes_a_row_of_rates_latencies_and_pipeline_figures() -> None:
    window = Window(
        started_s=1_000.0, ingested=18_000, recommend_ms=[float(ms) for ms in range(1, 101)]
    )
    window.catalog_upserts = 6
    window.failed("Recommend", "DEADLINE_EXCEEDED")
    window.failed("Recommend", "DEADLINE_EXCEEDED")
    window.failed("Ingest", "not sent")
    window.onboardings.append(Onboarding("soak-1", 1.0, 6.5, 0.8))

    result = row(window, 1_060.0, 940.0, FIGURES, counted_before=1_000, load=2.5)

    assert {k: result[k] for k in COLUMNS} == {
        "minute": 2.0,
        "ingest/s": 300.0,
        "counted/s": 300.0,
        "backlog": 120,
        "fresh p50 ms": 850.0,
        "fresh p99 ms": 2_400.0,
        "reco/s": 100 / 60,
        "reco p50 ms": 50.0,
        "reco p99 ms": 100.0,  # nearest rank (bench.report.percentile)
        "catalog": 6,
        "onboarded": "1/1 6.5s",
        "errors": 3,
        "DLQ": 2,
        "load": 2.5,
    }
    assert result["errors by call"] == {"Recommend DEADLINE_EXCEEDED": 2, "Ingest not sent": 1}
    assert result["function exceptions"] == 1
    assert result["onboardings"][0]["tenant"] == "soak-1"


def test_a_failed_onboarding_counts_as_an_error_and_not_as_onboarded() -> None:
    window = Window(started_s=0.0)
    window.onboardings.append(Onboarding("soak-2", 1.2, None, 0.9, "Recommend UNAVAILABLE"))

    result = row(window, 60.0, 0.0, FIGURES, counted_before=None, load=1.0)

    assert result["onboarded"] == "0/1"
    assert result["errors"] == 1
    assert result["counted/s"] is None  # no previous count: no rate


def test_without_pipeline_figures_the_row_still_has_the_clients_side() -> None:
    window = Window(started_s=0.0, ingested=600)

    result = row(window, 60.0, 0.0, None, counted_before=500, load=1.0)

    assert result["ingest/s"] == 10.0
    assert result["backlog"] is None and result["fresh p99 ms"] is None
    assert result["reco p50 ms"] is None and result["onboarded"] == ""
