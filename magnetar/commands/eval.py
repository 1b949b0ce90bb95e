"""`magnetar eval`: offline next-basket quality on the UCI Online Retail file.

The I/O edge of `magnetar.personalization.evaluation`: reads the data file, runs the
evaluation (pure logic over the in-memory state), prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from magnetar.dev.problems import EnvironmentProblem
from magnetar.personalization.decay import DAY_MS
from magnetar.personalization.evaluation import (
    KS,
    EvaluationReport,
    Split,
    evaluate,
)
from magnetar.personalization.settings import SignalSettings, TenantPersonalization
from magnetar.workload import online_retail

DEFAULT_DATA = Path("../shared/data/online_retail_2010-12_2011-09.csv.xz")
DEFAULT_OUTPUT = Path("bench/results/eval-online-retail.json")
# Affinity half-lives (days) tried with --tune-half-life; chosen on validation like weights.
HALF_LIFE_GRID_DAYS = (7, 30, 90)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="offline next-basket hit rate on the Online Retail data set"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the .csv.xz file")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    parser.add_argument(
        "--test-from", default="2011-09-01", help="held-out invoices from this date are test"
    )
    parser.add_argument(
        "--validation-from",
        default="2011-08-01",
        help="held-out invoices from this date until --test-from are validation",
    )
    parser.add_argument(
        "--tune-half-life",
        action="store_true",
        help=f"also choose the affinity half-life among {HALF_LIFE_GRID_DAYS} days "
        "on validation (one replay each)",
    )
    parser.set_defaults(handler=_run)


def _epoch_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def _run(args: argparse.Namespace) -> int:
    console = Console()
    if not args.data.is_file():
        raise EnvironmentProblem(
            f"Online Retail data not found at {args.data}",
            "pass --data with the path of online_retail_2010-12_2011-09.csv.xz",
        )
    started = time.perf_counter()
    console.print(f"reading {args.data} …")
    events = list(online_retail.read_online_retail(args.data))
    console.print(f"  {len(events):,} events in {time.perf_counter() - started:.1f} s")

    validation_from, test_from = _epoch_ms(args.validation_from), _epoch_ms(args.test_from)
    end = max(e.occurred_at for e in events) + 1
    validation = Split("validation", validation_from, test_from)
    test = Split("test", test_from, end)
    candidates = [TenantPersonalization()]
    if args.tune_half_life:
        candidates = [
            TenantPersonalization(signals=SignalSettings(affinity_half_life_ms=days * DAY_MS))
            for days in HALF_LIFE_GRID_DAYS
        ]

    last_print = [0.0]

    def progress(stage: str, done: int) -> None:
        now = time.perf_counter()
        if now - last_print[0] >= 5 or done == len(events):
            last_print[0] = now
            share = f" {done / len(events):.0%}" if done else ""
            console.print(f"  {stage}{share} ({now - started:.0f} s)")

    report = evaluate(
        events,
        validation,
        test,
        candidates,
        online_retail.DEFAULT_TENANT,
        is_known_user=lambda user_id: not user_id.startswith("anon-"),
        progress=progress,
    )
    seconds = time.perf_counter() - started
    console.print(_table(report))
    chosen = report.chosen
    console.print(
        f"chosen on validation: {chosen.tuned}; "
        f"affinity half-life {chosen.settings.signals.affinity_half_life_ms // DAY_MS} d"
    )
    console.print(f"left out: {dict(report.left_out)}; runtime {seconds:.0f} s")
    console.print(f"data: {online_retail.CREDIT}, restricted to invoices before 2011-10-01")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_json(report, args, seconds), indent=2) + "\n")
    console.print(f"wrote {args.output}")
    return 0


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _table(report: EvaluationReport) -> Table:
    table = Table(
        title="Next-basket hit rate, Online Retail (Chen, Sain, Guo 2012, UCI ML Repository)"
    )
    table.add_column("split")
    table.add_column("method")
    table.add_column("customers", justify="right")
    for k in KS:
        table.add_column(f"hits@{k}", justify="right")
        table.add_column(f"HR@{k}", justify="right")
        table.add_column(f"lift@{k}", justify="right")
    for result in report.results:
        row = [result.split, result.method, f"{result.rates.users:,}"]
        for k in KS:
            row += [
                f"{result.rates.hits[k]:,}",
                f"{result.rates.rate(k):.3f}",
                _percent(result.lift[k]),
            ]
        table.add_row(*row)
    return table


def _json(report: EvaluationReport, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()

    return {
        "scenario": "next-basket hit rate",
        "data": {"path": str(args.data), "credit": online_retail.CREDIT},
        "splits": [
            {"name": s.name, "held_out_from": day(s.start_ms), "held_out_until": day(s.end_ms)}
            for s in report.splits
        ],
        "left_out": dict(report.left_out),
        "candidates": [
            {
                "signals": asdict(c.settings.signals),
                "tuned_blend": asdict(c.tuned),
                "validation": {f"hit_rate@{k}": c.validation.rate(k) for k in KS},
            }
            for c in report.candidates
        ],
        "chosen": {
            "signals": asdict(report.chosen.settings.signals),
            "recommend": asdict(report.chosen.settings.recommend),
            "tuned_blend": asdict(report.chosen.tuned),
        },
        "results": [
            {
                "split": r.split,
                "method": r.method,
                "customers": r.rates.users,
                **{f"hits@{k}": r.rates.hits[k] for k in KS},
                **{f"hit_rate@{k}": r.rates.rate(k) for k in KS},
                **{f"lift@{k}": r.lift[k] for k in KS},
            }
            for r in report.results
        ],
        "runtime_seconds": round(seconds, 1),
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
