"""The broker and PostgreSQL crash mid-stream: nothing accepted is lost or counted twice.

Disruptive — the broker kill takes every tenant's functions down, the PostgreSQL stop every
connection — so these carry the `faults` marker and are left out of the default run
(pyproject's addopts). Run them on a quiet stack with ``pytest -m faults tests/faults``; each
waits until no other pytest run is going and brings the stack back up afterwards. Figures
and repeat counts are in docs/faults.md.
"""

from __future__ import annotations

import pytest

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tests.faults.gateway_postgres import accepted_while_down, postgres_down_while_ingesting
from tests.faults.scenarios import RunOptions, broker_kill, postgres_restart
from tests.faults.test_function_faults import report_and_check

# Only `faults`: a run selecting `-m integration` must not take the stack down.
pytestmark = pytest.mark.faults


@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("exclusive_stack")
def test_broker_kill_9_in_the_middle_of_a_100k_replay_then_restart(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    options = RunOptions(events=100_000, rate_per_s=None, fault_at=0.3, drain_timeout_s=900)
    report_and_check(broker_kill(settings, pulsar_admin, options))


@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("exclusive_stack")
def test_postgres_immediate_stop_and_restart_mid_stream(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    options = RunOptions(events=10_000, rate_per_s=500, drain_timeout_s=600)
    report_and_check(postgres_restart(settings, pulsar_admin, options))


@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("exclusive_stack")
def test_postgres_down_while_ingesting_through_the_gateway(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    # Ingest must go on through the outage: keys and quotas are served from their last good
    # answer (gateway.answer_cache); before that fix every call failed once the 5 s caches
    # expired.
    options = RunOptions(events=10_000, rate_per_s=300, drain_timeout_s=600)
    results = postgres_down_while_ingesting(settings, pulsar_admin, options)
    report_and_check(results)
    for result in results:
        assert accepted_while_down(result) > 0, result.describe()
