"""A command sent SIGTERM unwinds like Ctrl-C: its clean-up runs, and it exits 143."""

from __future__ import annotations

import argparse
import os
import signal

import pytest

from cli import main as cli_main


def test_sigterm_runs_the_commands_cleanup_and_exits_143(monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []

    def command(args: argparse.Namespace) -> int:
        try:
            steps.append("scratch tenant created")
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("measured")  # never reached: the signal interrupts the command
            return 0
        finally:
            steps.append("scratch tenant removed")

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=command)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)

    # Without main's own handler the signal lands here and fails the test (rather than
    # ending pytest, as Python's default would).
    def outside(signum: int, frame: object) -> None:
        raise AssertionError("SIGTERM was not handled by the command line")

    before = signal.signal(signal.SIGTERM, outside)
    try:
        assert cli_main.main([]) == 143
        assert steps == ["scratch tenant created", "scratch tenant removed"]
        # The process's handling of SIGTERM is back as it was (tests call main in-process).
        assert signal.getsignal(signal.SIGTERM) is outside
    finally:
        signal.signal(signal.SIGTERM, before)
