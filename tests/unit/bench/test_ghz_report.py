"""How a ghz report becomes the benchmark's figures."""

from __future__ import annotations

from bench.ghz import parse_report


def test_calls_cancelled_at_the_end_of_the_run_are_not_errors() -> None:
    report: dict[str, object] = {
        "statusCodeDistribution": {"OK": 997, "Canceled": 1, "Unavailable": 2},
        "latencyDistribution": [
            {"percentage": 50, "latency": 800_000},
            {"percentage": 99, "latency": 4_500_000},
        ],
    }
    result = parse_report(report, seconds=2.0)
    assert (result.served, result.errors) == (997, 2)
    assert result.error_codes == {"Unavailable": 2}
    assert (result.p50_ms, result.p99_ms) == (0.8, 4.5)


def test_a_call_on_a_connection_ghz_closed_at_the_end_is_not_an_error() -> None:
    closed = (
        "rpc error: code = Unavailable desc = error reading from server: read tcp "
        "127.0.0.1:37804->127.0.0.1:50999: use of closed network connection"
    )
    report: dict[str, object] = {
        "statusCodeDistribution": {"OK": 1997, "Unavailable": 3},
        "errorDistribution": {closed: 1, "rpc error: code = Unavailable desc = pool": 2},
        "latencyDistribution": [],
    }
    result = parse_report(report, seconds=4.0)
    assert result.error_codes == {"Unavailable": 2}
    report["statusCodeDistribution"] = {"OK": 1997, "Unavailable": 1}
    report["errorDistribution"] = {closed: 1}
    assert parse_report(report, seconds=4.0).errors == 0
