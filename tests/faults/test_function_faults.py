"""Function instances crash or freeze, the gateway restarts, the state is rebuilt under the
stream: nothing accepted is lost or counted twice.

Non-disruptive — only the test's own tenants' instances and its own gateway are touched — so
part of the default run. Each scenario runs the protected pipeline and its control side by
side through the same fault; the control (materialize without its ledger; for client
retries also dedupe without a window) must double-count, or the test proves nothing.

Each scenario runs in a process of its own with a hard limit (`tests.faults.isolated`): a
hang fails the test with the scenario's stacks instead of holding the run. They run one
after the other, never side by side: a pipeline deployed while a killed instance waits for
the worker's restart can take that instance's ports (see `scenarios.kill_stages`). About
4 minutes in all on a quiet 2-core machine.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from magnetar.settings import Settings
from tests.faults.isolated import run_isolated
from tests.faults.scenarios import SCENARIO_OPTIONS, RunOptions, ScenarioResult

pytestmark = pytest.mark.integration

# Per scenario: the child's hard limit; its own budget for streaming, fault and drain leaves
# a minute of that for deploying and removing the two pipelines.
KILL_LIMIT_S = 300
SIGSTOP_LIMIT_S = 270
GATEWAY_LIMIT_S = 200
REBUILD_LIMIT_S = 200
SETUP_S = 60

# Rows for the terminal summary (tests/faults/conftest.py): what each scenario measured.
REPORTED: list[str] = []


def check(results: list[ScenarioResult]) -> None:
    protected = [r for r in results if not r.control]
    controls = [r for r in results if r.control]
    assert protected and controls
    for result in protected:
        assert result.recovered, result.describe()
        assert result.audit.exact, result.describe()
        assert result.audit.accepted > 0, result.describe()
    for result in controls:
        assert result.recovered, result.describe()
        assert result.audit.duplicated > 0, "the control run shows no duplicates: " + (
            result.describe()
        )
        assert result.audit.unexpected == 0, result.describe()


def report(results: list[ScenarioResult]) -> None:
    for result in results:
        row = result.row()
        REPORTED.append(
            f"{row['scenario']}: accepted {row['events']}, lost {row['lost']}, "
            f"duplicated {row['duplicated']}, unexpected {row['unexpected']}, "
            f"recovered {row['recovered']}, fault {_s(row['fault s'])}, "
            f"catch-up {_s(row['catch-up s'])} ({row['notes']})"
        )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def report_and_check(results: list[ScenarioResult]) -> None:
    """Figures first, into the run's summary, so a failing run still shows them."""
    report(results)
    check(results)


def run(settings: Settings, name: str, options: RunOptions, limit_s: float) -> None:
    report_and_check(run_isolated(settings, name, options, limit_s))


def options(name: str, limit_s: float) -> RunOptions:
    return replace(SCENARIO_OPTIONS[name], budget_s=limit_s - SETUP_S)


@pytest.mark.timeout(KILL_LIMIT_S + 90)
def test_kill_9_of_every_stage_mid_stream_loses_and_double_counts_nothing(
    settings: Settings,
) -> None:
    run(settings, "kill", options("kill", KILL_LIMIT_S), KILL_LIMIT_S)


@pytest.mark.timeout(SIGSTOP_LIMIT_S + 90)
def test_materialize_stopped_past_its_ack_timeout_and_keepalive_counts_everything_once(
    settings: Settings,
) -> None:
    run(settings, "sigstop", options("sigstop", SIGSTOP_LIMIT_S), SIGSTOP_LIMIT_S)


@pytest.mark.timeout(GATEWAY_LIMIT_S + 90)
def test_gateway_restarts_during_stream_uploads_with_client_retries_count_once(
    settings: Settings,
) -> None:
    run(settings, "gateway", options("gateway", GATEWAY_LIMIT_S), GATEWAY_LIMIT_S)


@pytest.mark.timeout(REBUILD_LIMIT_S + 90)
def test_a_rebuild_of_the_state_during_the_stream_loses_and_double_counts_nothing(
    settings: Settings,
) -> None:
    run(settings, "rebuild", options("rebuild", REBUILD_LIMIT_S), REBUILD_LIMIT_S)
