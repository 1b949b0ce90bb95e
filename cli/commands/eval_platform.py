"""`magnetar eval --through-platform`: the cutoff protocol through gRPC, Pulsar, the
pipeline Function and PostgreSQL, beside the same protocol run offline.

The I/O edge of `magnetar.personalization.cutoff_eval`: a scratch tenant (deleted at the
end unless `--keep-tenant`), its catalog published before the first event (the pipeline
joins it), every row before the cutoff imported through `EventService.ImportEvents`
(`magnetar.history`), a wait until the ledger has counted every accepted event, then
`Recommend` (k = 10 and 20) for each returning customer at the tenant's clock. The offline
twin replays the same accepted events with the catalog's categories (what enrich joins);
the two must agree within `AGREEMENT`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import psycopg
from rich.console import Console
from rich.table import Table

from cli.commands.eval import data_range
from magnetar.catalog_topic import publish_items
from magnetar.db.ledger import counted_events
from magnetar.errors import MagnetarError
from magnetar.history import progress as progress_file
from magnetar.history.importer import ImportReport, run_import
from magnetar.history.mapping import ONLINE_RETAIL_COLUMNS, OnlineRetailMapping
from magnetar.history.progress import ImportProgress
from magnetar.history.sender import ImportSender
from magnetar.history.sources import read_rows
from magnetar.personalization import cutoff_eval
from magnetar.personalization.evaluation import KS, HitRates
from magnetar.personalization.settings import TenantPersonalization
from magnetar.problems import EnvironmentProblem
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2_grpc, personalization_service_pb2_grpc
from magnetar.v1 import personalization_service_pb2 as pb
from magnetar.workload import online_retail
from magnetar.workload.wire import catalog_items
from tenants.wiring import tenant_admin

# The through-the-platform and offline hit rates must not differ by more than this.
AGREEMENT = 0.005
# What the gateway serves a tenant that configured nothing (magnetar.serving.personalization).
SERVED = TenantPersonalization()
PLATFORM = "magnetar through the platform (gRPC)"
OFFLINE = "magnetar offline replay, same protocol"
BASELINE = "most popular before the cutoff (baseline)"


def _epoch_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="minutes")


def _is_customer(user_id: str) -> bool:
    return not user_id.startswith("anon-")


def _prefix_file(source: Path, cutoff_ms: int, folder: Path) -> Path:
    """The source's header and data rows dated before the cutoff, as a plain CSV. The file
    is in time order (its README), so they are a prefix and keep their line numbers, which
    are the events' ids."""
    target = folder / "before-cutoff.csv"
    with target.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(ONLINE_RETAIL_COLUMNS))
        writer.writeheader()
        for _, row in read_rows(source):
            date = datetime.strptime(str(row["InvoiceDate"]).strip(), "%Y-%m-%d %H:%M:%S")
            if date.replace(tzinfo=UTC).timestamp() * 1000 >= cutoff_ms:
                break
            writer.writerow(row)
    return target


def _rejected_ids(report_path: Path) -> set[str]:
    """Ids of the rows the import rejected (mapping rules drop rows the replay drops too)."""
    ids: set[str] = set()
    with report_path.open(newline="") as rejects:
        for row in csv.DictReader(rejects):
            ids.add(online_retail.event_id_of(int(row["line"]) - 1))
    return ids


def _wait_counted(
    settings: Settings, tenant: str, expected: int, console: Console, stall_s: float
) -> int:
    """Poll the ledger count until it reaches `expected`, or stops moving for `stall_s`
    (PostgreSQL being down or restarting counts as not moving)."""
    last, moved = -1, time.monotonic()
    while True:
        try:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                counted = counted_events(conn, tenant)
        except psycopg.OperationalError as error:
            console.print(f"  PostgreSQL unavailable ({error.sqlstate}); waiting", markup=False)
            counted = last
        if counted >= expected:
            return counted
        if counted != last:
            last, moved = counted, time.monotonic()
            console.print(f"  counted {counted:,} of {expected:,}", markup=False)
        elif time.monotonic() - moved > stall_s:
            return max(counted, 0)
        time.sleep(1.0)


def _patiently(call: Callable[[], pb.RecommendResponse], for_s: float = 120.0) -> Any:
    """`call()`, again while it is UNAVAILABLE (PostgreSQL restarting) for up to `for_s`."""
    deadline = time.monotonic() + for_s
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _recommend_all(
    address: str, key: str, queries: Sequence[cutoff_eval.CutoffQuery]
) -> dict[int, dict[str, list[str]]]:
    lists: dict[int, dict[str, list[str]]] = {k: {} for k in KS}
    auth = [("authorization", f"Bearer {key}")]
    with grpc.insecure_channel(address) as channel:
        stub = personalization_service_pb2_grpc.PersonalizationServiceStub(channel)
        for query in queries:
            for k in KS:
                request = pb.RecommendRequest(user_id=query.user_id, k=k)
                reply = _patiently(partial(stub.Recommend, request, metadata=auth, timeout=30))
                lists[k][query.user_id] = [item.item_id for item in reply.items]
    return lists


def _import(
    settings: Settings,
    address: str,
    tenant: str,
    ingest_key: str,
    prefix: Path,
    folder: Path,
    console: Console,
) -> tuple[ImportReport, Path]:
    where = folder / "progress.json"
    mapping = OnlineRetailMapping()
    started = time.perf_counter()
    last = [0.0]

    def settled(now: ImportProgress, _: int) -> None:
        elapsed = time.perf_counter() - started
        if elapsed - last[0] >= 10:
            last[0] = elapsed
            rate = now.accepted / max(elapsed, 1e-9)
            console.print(f"  imported {now.accepted:,} ({rate:,.0f} events/s)", markup=False)

    with grpc.insecure_channel(address) as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        sender = ImportSender(stub.ImportEvents, [("authorization", f"Bearer {ingest_key}")])
        report = run_import(
            prefix, mapping.map, sender, where, ImportProgress.fresh(prefix, tenant),
            on_settled=settled,
        )  # fmt: skip
    return report, progress_file.rejects_path(where)


def _delete(tenant: str, console: Console) -> None:
    try:
        with tenant_admin() as admin:
            admin.delete(tenant)
    except MagnetarError as error:
        console.print(f"could not delete {tenant} ({error}): magnetar tenants delete {tenant}")


def run(args: argparse.Namespace) -> int:
    console = Console(width=None if os.isatty(1) else 150)
    if not args.data.is_file():
        raise EnvironmentProblem(f"data not found at {args.data}", "pass --data FILE")
    if not args.cutoff:
        raise EnvironmentProblem("--through-platform needs --cutoff", "e.g. --cutoff 2011-09-01")
    settings = Settings.load()
    address = args.gateway or f"{settings.grpc_host}:{settings.grpc_port}"
    cutoff = _epoch_ms(args.cutoff)
    started = time.perf_counter()
    events = list(online_retail.read_online_retail(args.data))
    if any(a.occurred_at > b.occurred_at for a, b in itertools.pairwise(events)):
        raise EnvironmentProblem(f"{args.data} is not in time order", "sort it by InvoiceDate")
    before = [e for e in events if e.occurred_at < cutoff]
    queries = cutoff_eval.cutoff_queries(events, cutoff, _is_customer)
    if not before or not queries:
        raise EnvironmentProblem(
            "no customer bought both before and from the cutoff", "choose another --cutoff"
        )
    console.print(
        f"{len(events):,} events read; {len(before):,} before {args.cutoff}; "
        f"{len(queries):,} returning customers to ask"
    )
    catalog = catalog_items(before)
    categories = {item.item_id: tuple(item.categories) for item in catalog}
    tenant = args.tenant or f"eval-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="magnetar-eval-") as scratch:
        folder = Path(scratch)
        prefix = _prefix_file(args.data, cutoff, folder)
        with tenant_admin() as admin:
            onboarded = admin.create(tenant, "magnetar eval", "enterprise")
        try:
            client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
            try:
                publish_items(client, tenant, catalog)
            finally:
                client.close()
            console.print(f"scratch tenant {tenant}: {len(catalog):,} catalog items; importing")
            report, rejects = _import(
                settings, address, tenant, onboarded.ingest_key.minted.secret, prefix, folder,
                console,
            )  # fmt: skip
            accepted = report.progress.accepted
            imported_s = time.perf_counter() - started
            counted = _wait_counted(settings, tenant, accepted, console, args.stall_seconds)
            counted_s = time.perf_counter() - started
            if counted != accepted:
                console.print(f"only {counted:,} of {accepted:,} accepted events were counted")
                return 1
            lists = _recommend_all(address, onboarded.read_key.minted.secret, queries)
            recommended_s = time.perf_counter() - started
            rejected = _rejected_ids(rejects)
        finally:
            if not args.keep_tenant:
                _delete(tenant, console)

    # The offline twin: the accepted events, with the categories enrich joined.
    fed = [
        dataclasses.replace(e, tenant_id=tenant, categories=categories.get(e.item_id, ()))
        for e in before
        if e.event_id not in rejected
    ]
    now = cutoff_eval.clock_at(fed)
    state = cutoff_eval.state_of(fed, SERVED)
    offline = cutoff_eval.offline_rankings(state, queries, SERVED, tenant, now, max(KS))
    popular = cutoff_eval.most_popular_before(events, cutoff, max(KS))
    rates = {
        PLATFORM: cutoff_eval.hit_rates(queries, lambda q, k: lists[k].get(q.user_id, ()), KS),
        OFFLINE: cutoff_eval.hit_rates(queries, cutoff_eval.from_lists(offline), KS),
        BASELINE: cutoff_eval.hit_rates(queries, lambda q, k: popular, KS),
    }
    gaps = {k: abs(rates[PLATFORM].rate(k) - rates[OFFLINE].rate(k)) for k in KS}
    agree = all(gap <= AGREEMENT for gap in gaps.values())
    same = sum(1 for q in queries if lists[max(KS)].get(q.user_id) == offline[q.user_id])
    seconds = time.perf_counter() - started
    console.print(_table(rates, args.cutoff))
    console.print(
        f"served at {_day(now)} (the tenant's clock: newest event before the cutoff); "
        f"platform vs offline: "
        + ", ".join(f"|ΔHR@{k}| = {gaps[k]:.4f}" for k in KS)
        + (" — agree" if agree else f" — DISAGREE (more than {AGREEMENT})")
        + f"; the same top {max(KS)} for {same:,} of {len(queries):,} customers"
    )
    console.print(
        f"import {imported_s:.0f} s, all counted at {counted_s:.0f} s, recommendations at "
        f"{recommended_s:.0f} s, total {seconds:.0f} s; {accepted:,} events imported, "
        f"{report.progress.rejected:,} rows rejected ({dict(report.reasons)})"
    )
    timings = {
        "imported": imported_s,
        "counted": counted_s,
        "recommended": recommended_s,
        "total": seconds,
    }
    document = _json(args, data_range(events), rates, gaps, agree, now, accepted, report, timings)
    document["same_top_lists"] = same
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"data: {online_retail.CREDIT}, {data_range(events)}; wrote {args.output}")
    return 0 if agree else 1


def _table(rates: dict[str, HitRates], cutoff: str) -> Table:
    table = Table(title=f"Next-basket hit rate at the cutoff {cutoff} — Online Retail (UCI)")
    table.add_column("method")
    table.add_column("customers", justify="right")
    for k in KS:
        table.add_column(f"hits@{k}", justify="right")
        table.add_column(f"HR@{k}", justify="right")
    for name, found in rates.items():
        row = [name, f"{found.users:,}"]
        for k in KS:
            row += [f"{found.hits[k]:,}", f"{found.rate(k):.3f}"]
        table.add_row(*row)
    return table


def _json(
    args: argparse.Namespace,
    read: str,
    rates: dict[str, HitRates],
    gaps: dict[int, float],
    agree: bool,
    now: int,
    accepted: int,
    report: ImportReport,
    timings: dict[str, float],
) -> dict[str, Any]:
    return {
        "scenario": "next-basket hit rate through the platform",
        "data": {
            "path": str(args.data),
            "credit": online_retail.CREDIT,
            "range": read,
        },
        "cutoff": args.cutoff,
        "served_at": _day(now),
        "imported_events": accepted,
        "rejected_rows": dict(report.reasons),
        "recommend": dataclasses.asdict(SERVED.recommend),
        "results": [
            {
                "method": name,
                "customers": found.users,
                **{f"hits@{k}": found.hits[k] for k in KS},
                **{f"hit_rate@{k}": found.rate(k) for k in KS},
            }
            for name, found in rates.items()
        ],
        "platform_vs_offline": {f"abs_diff@{k}": gaps[k] for k in KS},
        "agree_within": AGREEMENT,
        "agree": agree,
        "seconds": {name: round(value, 1) for name, value in timings.items()},
        "machine": {"cores": os.cpu_count()},
    }
