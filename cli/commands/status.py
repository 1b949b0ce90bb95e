"""`magnetar status`: a live view of every tenant's pipeline, refreshed in place."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from magnetar.observability.collect import pipeline_tenants, snapshot
from magnetar.observability.pipeline_snapshot import PipelineSnapshot, StatusRow, status_row
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="live per-tenant pipeline view")
    status.add_argument("--tenant", action="append", help="only these tenants (repeatable)")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    status.add_argument(
        "--iterations", type=int, default=0, help="stop after this many refreshes (0: run on)"
    )
    status.set_defaults(handler=_status)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(value: float | None) -> str:
    return "…" if value is None else f"{value:,.0f}"


def render(rows: list[StatusRow]) -> Table:
    table = Table(
        title="magnetar status",
        caption="rates over the refresh interval; "
        "freshness = gateway acceptance → visible in state, last minute",
    )
    for column in (
        "tenant",
        "accepted/s",
        "counted/s",
        "backlog",
        "fresh p50 ms",
        "fresh p99 ms",
        "DLQ",
        "errors",
        "functions",
    ):
        table.add_column(column, justify="left" if column in ("tenant", "functions") else "right")
    for row in rows:
        colour = "green" if row.healthy else "red"
        table.add_row(
            row.tenant,
            _rate(row.accepted_per_s),
            _rate(row.counted_per_s),
            f"{row.backlog:,}",
            _ms(row.freshness_p50_ms),
            _ms(row.freshness_p99_ms),
            f"{row.dead_lettered:,}",
            f"{row.errors:,}",
            f"[{colour}]{row.functions}[/{colour}]",
        )
    return table


def _status(args: argparse.Namespace) -> int:
    settings = Settings.load()
    previous: dict[str, PipelineSnapshot] = {}
    with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
        tenants = args.tenant or pipeline_tenants(admin)
        with Live(render([]), console=Console(), auto_refresh=False) as live:
            iteration = 0
            while args.iterations == 0 or iteration < args.iterations:
                rows = []
                for tenant in tenants:
                    current = snapshot(admin, settings.database_url, tenant)
                    rows.append(status_row(current, previous.get(tenant)))
                    previous[tenant] = current
                live.update(render(rows), refresh=True)
                iteration += 1
                if args.iterations == 0 or iteration < args.iterations:
                    time.sleep(args.interval)
    return 0
