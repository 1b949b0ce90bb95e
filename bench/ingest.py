"""Ingest benchmark: the gateway against a plain pulsar-client producer, same run, same broker.

    .venv/bin/python -m bench.ingest [--seconds 5] [--batches 1,100,1000] [--rate 2000]

Starts a scratch tenant (Pulsar namespace with dedup, partitioned raw topic, a key), runs
`magnetar gateway serve` as its own process (as in production), then for each batch size:

* gateway: concurrent `Ingest` calls over one gRPC channel for `--seconds`;
* plain: the same events sent by a pulsar-client producer (same batching, same keys,
  same schema, acknowledged per batch) to the same topic, from this process.

Then a fixed-rate phase: `--rate` events/s in batches of `--rate-batch` (open loop, calls
start on schedule whatever the previous ones do), where Ingest's p99 is the figure.

It prints a table and writes JSON under bench/results/. A benchmark, not a test: on a
shared 2-core machine the figures move with whatever else runs; report them as measured.
`BENCH_PROFILE=/tmp/gateway.prof` runs the gateway under cProfile and writes its profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import pulsar
from rich.console import Console
from rich.table import Table

from bench.gateway import SERVE, gateway_process
from bench.report import machine, percentile
from gateway.event_publisher import PublisherOptions
from gateway.pulsar_bridge import BatchAck
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.db.models import Tenant
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import quiet_logger
from magnetar.pulsar_tokens import tenant_role
from magnetar.raw_events import SerializedEventSchema, provision_raw_topic
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2
from tenants.wiring import issue_producer_token

RESULTS = Path(__file__).resolve().parent / "results"
PROFILE = (
    ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
)
CONCURRENCY = {1: 32, 100: 8, 1000: 2}


@dataclass
class Phase:
    mode: str
    batch: int
    concurrency: int
    calls: int
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def make_batches(size: int, count: int) -> list[list[events_pb2.Event]]:
    now = int(time.time())
    batches = []
    for b in range(count):
        batch = []
        for i in range(size):
            event = events_pb2.Event(
                event_id=uuid.uuid4().hex,
                user_id=f"user-{(b * size + i) % 5000}",
                type=events_pb2.EVENT_TYPE_VIEW,
                item_id=f"sku-{(b * 7 + i) % 20000}",
                attributes={"page_url": f"https://shop.example/p/{i}"},
                context=events_pb2.EventContext(user_agent="Mozilla/5.0 bench", locale="en-GB"),
            )
            event.occurred_at.FromSeconds(now)
            batch.append(event)
        batches.append(batch)
    return batches


# -- load generators ---------------------------------------------------------------------


async def closed_loop(
    call: Callable[[int], Awaitable[int]], concurrency: int, seconds: float
) -> tuple[list[float], int, int, float]:
    """`concurrency` workers calling back to back; latencies, events, errors, elapsed."""
    latencies: list[float] = []
    totals = {"events": 0, "errors": 0}
    start = time.perf_counter()
    stop_at = start + seconds

    async def worker(offset: int) -> None:
        n = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                accepted = await call(n)  # not `+= await`: that would lose updates
                latencies.append(time.perf_counter() - t0)
                totals["events"] += accepted
            except Exception:
                totals["errors"] += 1
            n += concurrency

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, totals["events"], totals["errors"], time.perf_counter() - start


async def open_loop(
    call: Callable[[int], Awaitable[int]], per_second: float, seconds: float
) -> tuple[list[float], int, int, float]:
    """Calls started on a fixed schedule (no coordinated omission); same results."""
    latencies: list[float] = []
    totals = {"events": 0, "errors": 0}
    interval = 1 / per_second
    start = time.perf_counter()

    async def one(n: int) -> None:
        t0 = time.perf_counter()
        try:
            accepted = await call(n)
            latencies.append(time.perf_counter() - t0)
            totals["events"] += accepted
        except Exception:
            totals["errors"] += 1

    tasks = []
    n = 0
    while (scheduled := start + n * interval) < start + seconds:
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.ensure_future(one(n)))
        n += 1
    await asyncio.gather(*tasks)
    return latencies, totals["events"], totals["errors"], time.perf_counter() - start


# -- the two contenders ------------------------------------------------------------------


class GatewayClient:
    def __init__(self, address: str, key: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = event_service_pb2_grpc.EventServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {key}"),)
        self.requests: list[event_service_pb2.IngestRequest] = []

    def load(self, batches: list[list[events_pb2.Event]]) -> None:
        self.requests = [event_service_pb2.IngestRequest(events=b) for b in batches]

    async def call(self, n: int) -> int:
        reply = await self._stub.Ingest(
            self.requests[n % len(self.requests)], metadata=self._metadata, timeout=10
        )
        return int(reply.accepted_count)

    async def close(self) -> None:
        await self._channel.close()


class PlainProducer:
    """What an application would do without the gateway: the same producer settings."""

    def __init__(self, settings: Settings, topic: str) -> None:
        options = PublisherOptions()
        self._client = pulsar.Client(
            settings.pulsar_service_url,
            authentication=pulsar.AuthenticationToken(settings.pulsar_admin_token),
            logger=quiet_logger(),  # as the gateway does
        )
        self._producer = self._client.create_producer(
            topic,
            producer_name=f"bench-plain-{uuid.uuid4().hex[:6]}",
            schema=SerializedEventSchema(),
            max_pending_messages=options.max_pending_events,
            max_pending_messages_across_partitions=options.max_pending_events * 4,
            batching_enabled=True,
            batching_max_messages=options.batching_max_messages,
            batching_max_publish_delay_ms=options.batching_delay_ms,
        )
        self.batches: list[list[events_pb2.Event]] = []

    async def call(self, n: int) -> int:
        batch = self.batches[n % len(self.batches)]
        ack = BatchAck(asyncio.get_running_loop(), len(batch), ok=pulsar.Result.Ok)
        for event in batch:
            self._producer.send_async(
                event.SerializeToString(), ack.callback, partition_key=event.user_id
            )
        await ack.future
        return len(batch)

    def close(self) -> None:
        self._producer.close()
        self._client.close()


# -- setup -------------------------------------------------------------------------------


@contextmanager
def scratch_tenant(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """(tenant, raw topic, ingest key) for the run; everything removed afterwards."""
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
        admin.create_tenant(tenant)
        admin.create_namespace(f"{tenant}/events")
        admin.set_deduplication(f"{tenant}/events", True)
        admin.grant_namespace_permission(f"{tenant}/events", tenant_role(tenant))
        topic = provision_raw_topic(admin, tenant)
        with sessions.begin() as session:
            session.add(Tenant(tenant_id=tenant, display_name="benchmark"))
        issue_producer_token(settings, sessions, tenant)
        minted, _ = ApiKeyStore(sessions).create(tenant, [Scope.INGEST], "bench")
        try:
            yield tenant, topic, minted.secret
        finally:
            for namespace in admin.namespaces(tenant):
                admin.delete_namespace(namespace)
            admin.delete_tenant(tenant)
            with sessions.begin() as session:
                row = session.get(Tenant, tenant)
                if row is not None:
                    session.delete(row)
            engine.dispose()


# -- the run -----------------------------------------------------------------------------


async def run(
    args: argparse.Namespace, settings: Settings, address: str, key: str, topic: str
) -> list[Phase]:
    gateway = GatewayClient(address, key)
    plain = PlainProducer(settings, topic)
    phases: list[Phase] = []

    def record(
        mode: str, batch: int, concurrency: int, result: tuple[list[float], int, int, float]
    ) -> None:
        latencies, events, errors, elapsed = result
        phases.append(
            Phase(
                mode,
                batch,
                concurrency,
                len(latencies),
                events,
                elapsed,
                percentile(latencies, 50) * 1000,
                percentile(latencies, 99) * 1000,
                errors,
            )
        )

    try:
        for size in args.batches:
            batches = make_batches(size, max(4, 20_000 // size))
            gateway.load(batches)
            plain.batches = batches
            concurrency = CONCURRENCY.get(size, 4)
            await closed_loop(gateway.call, concurrency, 0.5)  # warm-up: producer, auth cache
            await closed_loop(plain.call, concurrency, 0.5)
            record(
                "plain", size, concurrency, await closed_loop(plain.call, concurrency, args.seconds)
            )
            record(
                "gateway",
                size,
                concurrency,
                await closed_loop(gateway.call, concurrency, args.seconds),
            )
        size = args.rate_batch
        batches = make_batches(size, max(4, 20_000 // size))
        gateway.load(batches)
        plain.batches = batches
        calls_per_s = args.rate / size
        record(
            f"plain @{args.rate}/s", size, 0, await open_loop(plain.call, calls_per_s, args.seconds)
        )
        record(
            f"gateway @{args.rate}/s",
            size,
            0,
            await open_loop(gateway.call, calls_per_s, args.seconds),
        )
    finally:
        await gateway.close()
        plain.close()
    return phases


def report(phases: list[Phase], args: argparse.Namespace) -> dict[str, Any]:
    plain = {p.batch: p.events_per_s for p in phases if p.mode == "plain"}
    table = Table(title="magnetar bench ingest (gateway vs plain pulsar-client producer)")
    for column in (
        "mode",
        "batch",
        "conc.",
        "events/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "gateway/plain",
    ):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for p in phases:
        ratio = ""
        if p.mode == "gateway" and plain.get(p.batch):
            ratio = f"{p.events_per_s / plain[p.batch]:.0%}"
        table.add_row(
            p.mode,
            str(p.batch),
            str(p.concurrency or "open"),
            f"{p.events_per_s:,.0f}",
            f"{p.p50_ms:.1f}",
            f"{p.p99_ms:.1f}",
            str(p.errors),
            ratio,
        )
    Console().print(table)
    rate_row = next((p for p in phases if p.mode.startswith("gateway @")), None)
    gateway_100 = next((p for p in phases if p.mode == "gateway" and p.batch == 100), None)
    targets = {
        "throughput_ratio_batch_100": (gateway_100.events_per_s / plain[100])
        if gateway_100 and plain.get(100)
        else None,
        "ingest_p99_ms_at_rate": rate_row.p99_ms if rate_row else None,
    }
    Console().print(
        f"  targets: gateway/plain at batch 100 >= 50% → {targets['throughput_ratio_batch_100'] or 0:.0%}; "
        f"Ingest p99 at {args.rate}/s in batches of {args.rate_batch} <= 20 ms → "
        f"{targets['ingest_p99_ms_at_rate'] or float('nan'):.1f} ms"
    )
    return {
        "scenario": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        # The machine is shared: the load average says how much else was running.
        "load_average_1_5_15": os.getloadavg(),
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "phases": [{**asdict(p), "events_per_s": p.events_per_s} for p in phases],
        "targets": targets,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gateway ingest vs a plain Pulsar producer")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument(
        "--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 100, 1000]
    )
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="events/s of the fixed-rate phase"
    )
    parser.add_argument("--rate-batch", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = Settings.load()
    with (
        scratch_tenant(settings) as (_tenant, topic, key),
        gateway_process("ingest", (*PROFILE, *SERVE)) as gateway,
    ):
        phases = asyncio.run(run(args, settings, gateway.address, key, topic))
    result = report(phases, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ingest-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
