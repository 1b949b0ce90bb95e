"""`magnetar tenants rebuild T`: the command's face on `tenants.rebuild.Rebuild`.

Says first what the tenant's retention lets a rebuild find (and warns when it will probably
lose history), shows the replay with a progress bar (messages, events/s), and ends with a
summary: what was replayed, counted and refused, how long the pipeline was held, and the
state's rows before and after. Exit 1 when the switch was refused (history would be lost
without ``--allow-history-loss``); the live state is then unchanged.
"""

from __future__ import annotations

import argparse
import os
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from functions.replay import ReplayCounts
from magnetar.settings import Settings
from tenants.rebuild import Rebuild, RebuildOptions, RebuildReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tenant_id")
    parser.add_argument(
        "--allow-history-loss",
        action="store_true",
        help="switch even if the live state counted events the topics no longer hold",
    )
    parser.add_argument(
        "--max-hold-seconds",
        type=float,
        default=RebuildOptions.max_hold_s,
        help="longest the tenant's pipeline is held for the last catch-up (per attempt)",
    )


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, width=None if os.isatty(2) else 120)
    options = RebuildOptions(
        allow_history_loss=args.allow_history_loss, max_hold_s=args.max_hold_seconds
    )
    with Rebuild(Settings.load(), args.tenant_id, options) as rebuild:
        report = rebuild.open()
        verdict = report.verdict
        console.print(
            f"rebuilding {args.tenant_id} from its raw and import topics "
            f"({report.partitions} partitions)"
        )
        console.print(
            f"retention of {args.tenant_id}/events: {verdict.retention.describe()}", soft_wrap=True
        )
        for warning in verdict.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
        columns = (
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.completed:>12,.0f} messages"),
            TextColumn("{task.fields[rate]:>9,.0f} events/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("starting", total=None, rate=0.0)
            started = time.monotonic()

            def progress(phase: str, counts: ReplayCounts) -> None:
                rate = counts.read / max(time.monotonic() - started, 1e-9)
                bar.update(task, description=phase, completed=counts.read, rate=rate)

            rebuild.replay(progress)
            report = rebuild.switch(progress)
            bar.update(task, description="switched" if report.switched else "not switched")
    console.print(summary(report))
    console.print(state_table(report))
    if not report.switched:
        console.print(
            f"[red]not switched:[/red] {report.refusal}; the live state is unchanged. "
            "Run again with --allow-history-loss to switch to what the topics hold.",
            soft_wrap=True,
        )
        return 1
    console.print(
        f"{args.tenant_id} now serves the rebuilt state; the old state is dropped", soft_wrap=True
    )
    return 0


def summary(report: RebuildReport) -> Table:
    counts = report.counts
    table = Table(title=f"rebuild of {report.tenant_id}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("messages replayed", f"{counts.read:,}")
    table.add_row("events counted", f"{counts.counted:,}")
    table.add_row("repeats (dedupe window)", f"{counts.repeats:,}")
    table.add_row("repeats (ledger)", f"{counts.already_counted:,}")
    for reason, number in counts.refused.most_common():
        table.add_row(f"refused: {reason}", f"{number:,}")
    rate = report.replayed / report.replay_s if report.replay_s > 0 else 0.0
    table.add_row("replay", f"{report.replay_s:,.1f} s ({rate:,.0f} events/s)")
    table.add_row(
        "pipeline held",
        f"{report.hold_s:,.2f} s in {report.holds} hold(s); switch {report.switch_s:,.2f} s",
    )
    if report.erased_rows:
        table.add_row("rows of users erased meanwhile", f"{report.erased_rows:,}")
    if report.unreplayed:
        table.add_row("counted before, not in the topics", f"{report.unreplayed:,}")
    for note in report.notes:
        table.add_row("note", note)
    table.add_row("switched", "yes" if report.switched else "NO")
    return table


def state_table(report: RebuildReport) -> Table:
    table = Table(title="state: rows of the tenant")
    table.add_column("table")
    table.add_column("before (live)", justify="right")
    table.add_column("rebuilt", justify="right")
    if report.live is None or report.rebuilt is None:
        return table
    for name, rows in report.live.rows.items():
        table.add_row(name, f"{rows:,}", f"{report.rebuilt.rows.get(name, 0):,}")
    table.add_row(
        "events counted", f"{report.live.counted:,}", f"{report.rebuilt.counted:,}", style="bold"
    )
    return table
