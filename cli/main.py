"""The `magnetar` command line: one entry point, one module per command group.

Each module in `cli.commands` exposes ``register(subparsers)``, adding its sub-commands
with a ``handler(args) -> int`` default. Problems with the environment end in one line that
names the fix and exit code 2; nothing prints a traceback at a user. SIGTERM ends a command
as Ctrl-C does, unwinding it, so what it set up for itself (a benchmark's scratch tenant, a
demo's clients) is removed on the way out instead of left behind.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from magnetar.problems import EnvironmentProblem

COMMAND_MODULES = (
    "dev",
    "keys",
    "tenants",
    "gateway",
    "admin",
    "functions",
    "bench",
    "status",
    "eval",
    "importing",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="magnetar", description="Multi-tenant, real-time personalization on Apache Pulsar."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cli.commands.{name}").register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, to unwind it like an interrupt."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Python's default for SIGTERM ends the process at once, skipping every `finally`.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args))
    except EnvironmentProblem as problem:
        print(f"magnetar: error: {problem}", file=sys.stderr)
        return 2
    except Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
