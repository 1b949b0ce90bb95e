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

    produce = scenarios.add_parser("produce", help="plain Pulsar round trip: the machine's floor")
    produce.add_argument("--rate", type=float, default=1000.0, help="offered events/s")
    produce.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    produce.add_argument("--burst", type=int, default=20_000, help="events in the burst")
    produce.set_defaults(handler=_produce)

    onboard = scenarios.add_parser(
        "onboard", help="CreateTenant to the first recommendation reflecting an event"
    )
    onboard.add_argument("--runs", type=int, default=10, help="tenants onboarded, one at a time")
    onboard.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per run")
    onboard.set_defaults(handler=_onboard)

    ingest = scenarios.add_parser(
        "ingest", help="gateway Ingest vs a plain producer (options: see bench/ingest.py)"
    )
    ingest.add_argument("options", nargs=argparse.REMAINDER, help="passed to the benchmark")
    ingest.set_defaults(handler=_ingest)

    recommend = scenarios.add_parser(
        "recommend", help="Recommend under ingest, beside an empty handler and bare grpc.aio"
    )
    recommend.add_argument("--rate", type=float, default=500.0, help="requests/s, steady phase")
    recommend.add_argument(
        "--seconds", type=float, default=10.0, help="length of each steady phase"
    )
    recommend.add_argument("--ingest-rate", type=float, default=1000.0, help="events/s meanwhile")
    recommend.add_argument(
        "--peak-rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0],
        help="requests/s tried in turn for the peak at p99 <= 25 ms",
    )
    recommend.add_argument("--step-seconds", type=float, default=5.0, help="per peak-search rate")
    recommend.add_argument(
        "--unknown-key-flood",
        type=float,
        default=0.0,
        metavar="CALLS_PER_S",
        help="instead: Recommend at --rate alone, then beside this many calls/s with "
        "well-formed unknown keys (docs/serving.md, unauthenticated callers)",
    )
    recommend.add_argument(
        "--client",
        choices=("ghz", "python"),
        default="ghz",
        help="load generator: ghz (Go, scripts/install_tools.sh) or the asyncio client",
    )
    recommend.add_argument(
        "--connections", type=int, default=16, help="gRPC connections ghz spreads calls over"
    )
    recommend.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes of the gateway and of the bare server, sharing each one's port "
        "(SO_REUSEPORT), as `magnetar gateway serve --workers N`",
    )
    recommend.add_argument(
        "--freshness-samples",
        type=int,
        default=200,
        help="purchases committed per condition, each timed from its commit until Recommend "
        "leaves the item out (0: none)",
    )
    recommend.set_defaults(handler=_recommend)

    soak = scenarios.add_parser(
        "soak", help="steady traffic for a long time: errors, freshness, memory of each process"
    )
    soak.add_argument("--minutes", type=float, default=60.0, help="length of the run")
    soak.add_argument(
        "--ingest-rate",
        type=float,
        default=300.0,
        help="events/s through Ingest (default: about half the pipeline's sustained rate)",
    )
    soak.add_argument("--recommend-rate", type=float, default=100.0, help="Recommend calls/s")
    soak.add_argument(
        "--catalog-seconds", type=float, default=10.0, help="a catalog upsert every this often"
    )
    soak.add_argument(
        "--onboard-minutes",
        type=float,
        default=5.0,
        help="a tenant onboarded and removed every this often (0: none)",
    )
    soak.add_argument(
        "--report-minutes", type=float, default=5.0, help="print the tables every this often"
    )
    soak.set_defaults(handler=_soak)

    from bench import http_door

    http_door.add_arguments(
        scenarios.add_parser(
            "http",
            help="HTTP/JSON door vs gRPC: Ingest throughput, Recommend p50 (bench/http_door.py)",
        )
    )
    scenarios.choices["http"].set_defaults(handler=http_door.main)

    from bench import faults

    faults.add_arguments(
        scenarios.add_parser("faults", help="fault suite: lost and duplicated events per fault")
    )


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


def _produce(args: argparse.Namespace) -> int:
    from bench import pipeline

    report = pipeline.run_produce(
        Settings.load(), rate=args.rate, seconds=args.seconds, burst=args.burst
    )
    report.print()
    print(f"results: {report.save()}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from bench import ingest

    return ingest.main(args.options)


def _recommend(args: argparse.Namespace) -> int:
    from bench import recommend

    report = recommend.run(
        Settings.load(),
        rate=args.rate,
        seconds=args.seconds,
        ingest_rate=args.ingest_rate,
        peak_rates=args.peak_rates,
        step_seconds=args.step_seconds,
        unknown_key_flood=args.unknown_key_flood,
        client=args.client,
        connections=args.connections,
        workers=args.workers,
        freshness_samples=args.freshness_samples,
    )
    report.print()
    print(f"results: {report.save()}")
    return 0


def _onboard(args: argparse.Namespace) -> int:
    from bench import onboard

    report = onboard.run(Settings.load(), runs=args.runs, timeout_s=args.timeout)
    report.print()
    print(f"results: {report.save()}")
    return 0


def _soak(args: argparse.Namespace) -> int:
    from bench import soak

    options = soak.SoakOptions(
        minutes=args.minutes,
        ingest_rate=args.ingest_rate,
        recommend_rate=args.recommend_rate,
        catalog_seconds=args.catalog_seconds,
        onboard_minutes=args.onboard_minutes,
        report_minutes=args.report_minutes,
    )
    report = soak.run(Settings.load(), options)
    soak.print_report(report)
    print(f"results: {report.save()}")
    return 0
