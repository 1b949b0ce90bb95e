"""Function instances crash or freeze, the gateway restarts: nothing accepted is lost or
counted twice.

Non-disruptive — only the test's own tenants' instances and its own in-process gateway are
touched — so part of the normal suite. Each scenario runs the protected pipeline and its
control side by side through the same fault; the control (materialize without its ledger;
for client retries also dedupe without a window) must double-count, or the test proves
nothing. The three scenarios run concurrently (about 1.5 minutes instead of 4).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tests.faults.gateway_restart import gateway_restart
from tests.faults.scenarios import (
    RunOptions,
    ScenarioResult,
    function_kill,
    materialize_pause,
)

# Out of the default run for now: in a CI dry run on a loaded machine the three concurrent
# scenarios stalled past 15 minutes; run them with `pytest -m faults` (docs/faults.md).
pytestmark = [pytest.mark.integration, pytest.mark.faults]

Outcome = list[ScenarioResult] | BaseException


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


@pytest.fixture(scope="module")
def outcomes(settings: Settings, pulsar_admin: PulsarAdmin) -> dict[str, Outcome]:
    jobs: dict[str, Callable[[], list[ScenarioResult]]] = {
        # Three rounds of kills while 600 events/s flow (see `kill_stages`).
        "kill": lambda: function_kill(
            settings, pulsar_admin, RunOptions(events=9_000, rate_per_s=600, fault_at=0.2)
        ),
        # Stopped past the 10 s ack timeout and the broker's keepalive (62 s).
        "sigstop": lambda: materialize_pause(
            settings, pulsar_admin, RunOptions(events=3_000, rate_per_s=300)
        ),
        # Restarted twice while two clients stream batches and resend what was not answered.
        "gateway": lambda: gateway_restart(
            settings, pulsar_admin, RunOptions(events=2_000, rate_per_s=300)
        ),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        done: dict[str, Outcome] = {}
        for name, future in futures.items():
            error = future.exception()
            done[name] = error if error is not None else future.result()
    return done


def result_of(outcomes: dict[str, Outcome], name: str) -> list[ScenarioResult]:
    outcome = outcomes[name]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def test_kill_9_of_every_stage_mid_stream_loses_and_double_counts_nothing(
    outcomes: dict[str, Outcome],
) -> None:
    check(result_of(outcomes, "kill"))


def test_materialize_stopped_past_its_ack_timeout_and_keepalive_counts_everything_once(
    outcomes: dict[str, Outcome],
) -> None:
    check(result_of(outcomes, "sigstop"))


def test_gateway_restarts_during_stream_uploads_with_client_retries_count_once(
    outcomes: dict[str, Outcome],
) -> None:
    check(result_of(outcomes, "gateway"))
