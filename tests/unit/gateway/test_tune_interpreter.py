"""The gateway process gives the GIL up every `gil_switch_interval_us`, from its settings."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from gateway.server import tune_interpreter
from magnetar.settings import Settings


@pytest.fixture(autouse=True)
def _restore_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_default_is_half_a_millisecond() -> None:
    tune_interpreter(Settings())
    assert sys.getswitchinterval() == pytest.approx(0.0005)


def test_a_setting_from_the_environment_sets_it() -> None:
    # What Settings.load makes of MAGNETAR_GIL_SWITCH_INTERVAL_US=5000.
    tune_interpreter(Settings().merged({"gil_switch_interval_us": "5000"}))
    assert sys.getswitchinterval() == pytest.approx(0.005)
