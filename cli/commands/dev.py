"""`magnetar dev up|down|status`: the local Pulsar standalone and PostgreSQL."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.dev import stack


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="run the local stack (Pulsar standalone, PostgreSQL)")
    commands = dev.add_subparsers(dest="dev_command", required=True)
    up = commands.add_parser("up", help="fetch, configure and start everything; wait until ready")
    up.add_argument("--no-pulsar", action="store_true", help="PostgreSQL and migrations only")
    up.set_defaults(handler=_up)
    commands.add_parser("down", help="stop everything cleanly").set_defaults(handler=_down)
    commands.add_parser("status", help="report each component").set_defaults(handler=_status)


def _up(args: argparse.Namespace) -> int:
    console = Console()
    report = stack.up(with_pulsar=not args.no_pulsar)
    table = Table(title="magnetar dev up")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for step, seconds in report.seconds.items():
        table.add_row(step, f"{seconds:.1f}")
    table.add_row("[bold]ready in[/bold]", f"[bold]{report.total:.1f}[/bold]")
    console.print(table)
    return 0


def _down(args: argparse.Namespace) -> int:
    for component, was_running in stack.down().items():
        print(f"{component}: {'stopped' if was_running else 'was not running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    report = stack.status()
    table = Table(title="magnetar dev status")
    table.add_column("component")
    table.add_column("state")
    for component, state in report.items():
        colour = "green" if state == "ready" else "red"
        table.add_row(component, f"[{colour}]{state}[/{colour}]")
    Console().print(table)
    return 0 if all(state == "ready" for state in report.values()) else 1
