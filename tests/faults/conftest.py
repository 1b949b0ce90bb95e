"""Fault tests run against the real stack; they reuse the integration suite's fixtures.

The disruptive scenarios (broker kill, PostgreSQL stop) take the stack away from everybody
using it: `exclusive_stack` waits (bounded) until no other pytest run is going, and brings
the stack back up afterwards whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults import injectors
from tests.integration.conftest import pulsar_admin, settings

__all__ = ["pulsar_admin", "settings"]

WAIT_FOR_OTHERS_S = 900


@pytest.fixture
def exclusive_stack() -> Iterator[None]:
    deadline = time.monotonic() + WAIT_FOR_OTHERS_S
    while (others := injectors.others_testing()) and time.monotonic() < deadline:
        time.sleep(10)
    if others:
        pytest.fail(f"other test runs still going after {WAIT_FOR_OTHERS_S}s: {others}")
    try:
        yield
    finally:
        injectors.dev_up()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What each fault scenario measured, in the run's output (CI logs keep the figures)."""
    from tests.faults.test_function_faults import REPORTED

    if REPORTED:
        terminalreporter.section("fault scenarios")
        for line in REPORTED:
            terminalreporter.write_line(line)
