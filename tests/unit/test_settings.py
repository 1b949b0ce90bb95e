"""Settings from the environment: a value that cannot work stops the process with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from magnetar.problems import EnvironmentProblem
from magnetar.settings import Settings


def test_numbers_from_the_environment_are_typed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAGNETAR_GRPC_PORT", "50999")
    monkeypatch.setenv("MAGNETAR_GIL_SWITCH_INTERVAL_US", "2000")
    monkeypatch.setenv("MAGNETAR_GATEWAY_REPLICAS", "3")
    settings = Settings.load(tmp_path)
    assert (settings.grpc_port, settings.gil_switch_interval_us) == (50999, 2000)
    assert settings.gateway_replicas == 3


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAGNETAR_GRPC_PORT", "fifty", "a whole number"),
        ("MAGNETAR_METRICS_PORT", "70000", "a port number"),
        ("MAGNETAR_GIL_SWITCH_INTERVAL_US", "0", "a number above 0"),
        ("MAGNETAR_GIL_SWITCH_INTERVAL_US", "-5", "a number above 0"),
        ("MAGNETAR_GATEWAY_REPLICAS", "0", "a number above 0"),
    ],
)
def test_a_value_that_cannot_work_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(EnvironmentProblem) as raised:
        Settings.load(tmp_path)
    assert expected in raised.value.problem
    assert variable in raised.value.fix


def test_the_gateway_command_ends_in_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fails before anything starts: nothing listens, nothing connects.
    monkeypatch.setenv("MAGNETAR_HOME", str(tmp_path))
    monkeypatch.setenv("MAGNETAR_GIL_SWITCH_INTERVAL_US", "often")
    assert main(["gateway", "serve"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "MAGNETAR_GIL_SWITCH_INTERVAL_US" in error
