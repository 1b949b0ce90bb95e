"""`magnetar bench <scenario>`: benchmarks that print a table and write JSON."""

from __future__ import annotations

import argparse
from typing import Any

from magnetar.settings import Settings


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser("bench", help="run a benchmark scenario")
    scenarios = bench.add_subparsers(dest="scenario", required=True)
    pipeline = scenarios.add_parser("pipeline", help="throughput and freshness of the pipeline")
    pipeline.add_argument("--rate", type=float, default=1000.0, help="offered events/s")
    pipeline.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    pipeline.add_argument("--burst", type=int, default=20_000, help="events in the burst")
    pipeline.add_argument(
        "--memory-state",
        action="store_true",
        help="dedupe window and sessions in memory only (no Pulsar function state)",
    )
    pipeline.set_defaults(handler=_pipeline)


def _pipeline(args: argparse.Namespace) -> int:
    from bench import pipeline

    report = pipeline.run(
        Settings.load(),
        rate=args.rate,
        seconds=args.seconds,
        burst=args.burst,
        durable_state=not args.memory_state,
    )
    report.print()
    print(f"results: {report.save()}")
    return 0
