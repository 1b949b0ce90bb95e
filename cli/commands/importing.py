"""`magnetar import --tenant T FILE`: a tenant's history from a CSV, JSON Lines or Parquet
file through `EventService.ImportEvents` (the I/O edge of `magnetar.history`).

Shows a progress bar with events/s and the time left, keeps a progress file so an
interrupted import resumes where it stopped (and says where), and ends with a summary of the
rows rejected, by reason with their lines; every rejected row is in the rejects file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from magnetar.catalog_topic import publish_items
from magnetar.history import progress as progress_file
from magnetar.history.importer import choose_mapping, resume_point, run_import
from magnetar.history.mapping import OnlineRetailMapping
from magnetar.history.progress import ImportProgress
from magnetar.history.sender import ImportSender
from magnetar.history.sources import count_rows
from magnetar.problems import EnvironmentProblem
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2_grpc
from magnetar.workload.wire import catalog_items

API_KEY_ENV = "MAGNETAR_API_KEY"


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return name.strip(), value.strip()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a tenant's history from a CSV, JSON Lines or Parquet file",
        description=(
            "Columns named like the event fields are read as such; --map renames, --const "
            "sets a field for every row. A CSV with the UCI Online Retail header is read with "
            "that file's rules (docs/ingestion.md, 'Importing history')."
        ),
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--api-key", help=f"an ingest key of the tenant (default: ${API_KEY_ENV})")
    parser.add_argument("--gateway", help="host:port (default: settings grpc_host:grpc_port)")
    parser.add_argument("--map", type=_pair, action="append", default=[], help="FIELD=COLUMN")
    parser.add_argument("--const", type=_pair, action="append", default=[], help="FIELD=VALUE")
    parser.add_argument("--rate", type=float, help="at most this many events per second")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--progress-file", type=Path, help="default: beside FILE")
    parser.add_argument("--again", action="store_true", help="import a finished file again")
    parser.add_argument(
        "--catalog",
        action="store_true",
        help="Online Retail only: also publish the items it mentions (dev stack's Pulsar token)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if not args.file.is_file():
        raise EnvironmentProblem(f"{args.file} not found", "pass the path of the file to import")
    key = args.api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise EnvironmentProblem(
            "no API key", f"pass --api-key or set {API_KEY_ENV} to an ingest key of the tenant"
        )
    settings = Settings.load()
    address = args.gateway or f"{settings.grpc_host}:{settings.grpc_port}"
    try:
        mapping = choose_mapping(args.file, dict(args.map), dict(args.const))
    except ValueError as error:
        raise EnvironmentProblem(str(error), "fix --map/--const") from None
    where = args.progress_file or progress_file.progress_path(args.file, args.tenant)
    try:
        start, said = resume_point(
            where, ImportProgress.fresh(args.file, args.tenant), again=args.again
        )
    except FileExistsError as error:
        console.print(f"magnetar import: {error}")
        return 1
    kind = "Online Retail rules" if isinstance(mapping, OnlineRetailMapping) else "column mapping"
    console.print(f"importing {args.file} into {args.tenant} ({kind}): {said}")
    total = count_rows(args.file)
    with grpc.insecure_channel(address) as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        sender = ImportSender(
            stub.ImportEvents,
            [("authorization", f"Bearer {key}")],
            events_per_second=args.rate,
            on_retry=lambda e, d: console.print(f"  {e.code().name}: resending in {d:.1f} s"),
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8,.0f} events/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("rows", total=total, rate=0.0)
            first = start.accepted
            bar.update(task, completed=_rows_before(args.file, start.done_line, total))

            def settled(now: ImportProgress, _: int) -> None:
                elapsed = bar.tasks[task].elapsed or 1e-9
                bar.update(task, advance=0, rate=(now.accepted - first) / elapsed)
                bar.update(task, completed=now.accepted + now.rejected)

            try:
                report = run_import(
                    args.file,
                    mapping.map,
                    sender,
                    where,
                    start,
                    batch_size=args.batch_size,
                    on_settled=settled,
                )
            except grpc.RpcError as error:
                console.print(
                    f"magnetar import: {error.code().name}: {error.details()}; "
                    f"run the same command again to resume ({where})"
                )
                return 1
    if args.catalog and isinstance(mapping, OnlineRetailMapping):
        _publish_catalog(settings, args.tenant, mapping)
    done = report.progress
    console.print(
        f"imported {done.accepted:,} events; {done.rejected:,} rows rejected"
        + ("" if report.counted is None else f"; the tenant has {report.counted:,} counted")
    )
    for reason, count in report.reasons.most_common():
        console.print(f"  {count:>8,}  {reason}")
    for line, reason, detail in report.examples:
        console.print(f"  line {line}: {reason} {detail}".rstrip())
    if done.rejected:
        console.print(f"every rejected row: {progress_file.rejects_path(where)}")
    return 0


def _rows_before(path: Path, done_line: int, total: int) -> int:
    # Lines are rows + 1 for a CSV header; close enough for the bar's starting point.
    return min(max(done_line - (1 if path.suffix != ".parquet" else 0), 0), total)


def _publish_catalog(settings: Settings, tenant: str, mapping: OnlineRetailMapping) -> None:
    import pulsar

    client = pulsar.Client(
        settings.pulsar_service_url,
        authentication=pulsar.AuthenticationToken(settings.pulsar_admin_token),
    )
    try:
        publish_items(client, tenant, catalog_items(mapping.items.values()))
    finally:
        client.close()
    print(f"published {len(mapping.items):,} catalog items", file=sys.stderr)
