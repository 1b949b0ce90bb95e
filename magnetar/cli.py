"""The `magnetar` command line: one entry point, one module per command group.

Each module in `magnetar.commands` exposes ``register(subparsers)``, adding its sub-commands
with a ``handler(args) -> int`` default. Problems with the environment end in one line that
names the fix and exit code 2; nothing prints a traceback at a user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from magnetar.dev.problems import EnvironmentProblem

COMMAND_MODULES = (
    "dev",
    "keys",
    "tenants",
    "gateway",
    "functions",
    "bench",
    "status",
    "eval",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="magnetar", description="Multi-tenant, real-time personalization on Apache Pulsar."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"magnetar.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except EnvironmentProblem as problem:
        print(f"magnetar: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
