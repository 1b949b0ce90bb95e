"""HTTP/JSON door benchmark: the door against gRPC on the same gateway process, same run.

    magnetar bench http [--seconds 5] [--rate 200] [--concurrency 8]

Starts a scratch tenant (namespace, raw topic, INGEST and READ keys) and `magnetar gateway
serve` as its own process, then:

* Ingest, batches of 100, closed loop (`--concurrency` calls in flight) for `--seconds`:
  over gRPC, then the same batches as proto3 JSON on `POST /v1/events:ingest`. Target:
  HTTP ≥ 50 % of gRPC's events/s (issue 19).
* Recommend, open loop at `--rate` calls/s for `--seconds`: over gRPC, then on
  `POST /v1/recommendations:recommend`. Target: HTTP p50 within 1 ms of gRPC's. The tenant
  has no state, so every call is the cold-start path: the same handler both ways, and the
  difference is the door's (HTTP parsing, JSON, the loopback gRPC call).

The clients (grpc.aio, httpx) run in this process, on the same machine as the gateway. A
benchmark, not a test: on a shared 2-core machine the figures move with whatever else runs;
report them as short runs, measured. JSON results go under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from bench.gateway import gateway_process
from bench.ingest import (
    GatewayClient,
    closed_loop,
    make_batches,
    open_loop,
    scratch_tenant,
)
from bench.report import machine, percentile
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.processes import free_port
from magnetar.settings import Settings
from magnetar.v1 import (
    event_service_pb2,
    personalization_service_pb2,
    personalization_service_pb2_grpc,
)

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 100
USERS = 1000


@dataclass
class Phase:
    rpc: str
    door: str
    load: str
    calls: int
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _phase(rpc: str, door: str, load: str, result: tuple[list[float], int, int, float]) -> Phase:
    latencies, events, errors, elapsed = result
    return Phase(
        rpc,
        door,
        load,
        len(latencies),
        events,
        elapsed,
        percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000,
        errors,
    )


class HttpDoorClient:
    """The same requests as JSON bodies on the door, serialized before the run."""

    def __init__(self, base_url: str, ingest_key: str, read_key: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10)
        self._ingest = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}
        self._read = {"Authorization": f"Bearer {read_key}", "Content-Type": "application/json"}
        self.ingest_bodies: list[bytes] = []
        self.recommend_bodies: list[bytes] = []

    async def ingest(self, n: int) -> int:
        body = self.ingest_bodies[n % len(self.ingest_bodies)]
        reply = await self._http.post("/v1/events:ingest", content=body, headers=self._ingest)
        reply.raise_for_status()
        return int(reply.json().get("acceptedCount", 0))

    async def recommend(self, n: int) -> int:
        body = self.recommend_bodies[n % len(self.recommend_bodies)]
        reply = await self._http.post(
            "/v1/recommendations:recommend", content=body, headers=self._read
        )
        reply.raise_for_status()
        return 1

    async def close(self) -> None:
        await self._http.aclose()


class GrpcRecommend:
    def __init__(self, address: str, read_key: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = personalization_service_pb2_grpc.PersonalizationServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {read_key}"),)
        self.requests: list[personalization_service_pb2.RecommendRequest] = []

    async def recommend(self, n: int) -> int:
        request = self.requests[n % len(self.requests)]
        await self._stub.Recommend(request, metadata=self._metadata, timeout=10)
        return 1

    async def close(self) -> None:
        await self._channel.close()


async def run(
    args: argparse.Namespace, address: str, door_url: str, ingest_key: str, read_key: str
) -> list[Phase]:
    ingest_grpc = GatewayClient(address, ingest_key)
    recommend_grpc = GrpcRecommend(address, read_key)
    door = HttpDoorClient(door_url, ingest_key, read_key)
    batches = make_batches(BATCH, 200)
    ingest_grpc.load(batches)
    door.ingest_bodies = [
        json_format.MessageToJson(event_service_pb2.IngestRequest(events=b), indent=None).encode()
        for b in batches
    ]
    requests = [
        personalization_service_pb2.RecommendRequest(user_id=f"user-{u}", k=10)
        for u in range(USERS)
    ]
    recommend_grpc.requests = requests
    door.recommend_bodies = [json_format.MessageToJson(r, indent=None).encode() for r in requests]
    contenders: list[
        tuple[str, Callable[[int], Awaitable[int]], Callable[[int], Awaitable[int]]]
    ] = [
        ("gRPC", ingest_grpc.call, recommend_grpc.recommend),
        ("HTTP", door.ingest, door.recommend),
    ]
    phases = []
    try:
        for _name, ingest, recommend in contenders:
            # Warm-up: producers, key caches, connections.
            await closed_loop(ingest, args.concurrency, 0.5)
            await closed_loop(recommend, 4, 0.5)
        for name, ingest, _ in contenders:
            result = await closed_loop(ingest, args.concurrency, args.seconds)
            phases.append(_phase("Ingest", name, f"closed, {args.concurrency} in flight", result))
        for name, _, recommend in contenders:
            result = await open_loop(recommend, args.rate, args.seconds)
            phases.append(_phase("Recommend", name, f"open, {args.rate:.0f}/s", result))
    finally:
        await ingest_grpc.close()
        await recommend_grpc.close()
        await door.close()
    return phases


def report(phases: Sequence[Phase], args: argparse.Namespace) -> dict[str, Any]:
    table = Table(title="magnetar bench http (HTTP/JSON door vs gRPC, same gateway)")
    for column in ("rpc", "door", "load", "calls", "per s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column in ("rpc", "door", "load") else "right")
    for p in phases:
        per_s = f"{p.per_s:,.0f} ev" if p.rpc == "Ingest" else f"{p.per_s:,.0f}"
        table.add_row(
            p.rpc, p.door, p.load, str(p.calls), per_s, f"{p.p50_ms:.2f}", f"{p.p99_ms:.2f}",
            str(p.errors),
        )  # fmt: skip
    Console().print(table)
    found = {(p.rpc, p.door): p for p in phases}
    grpc_ingest, http_ingest = found[("Ingest", "gRPC")], found[("Ingest", "HTTP")]
    grpc_rec, http_rec = found[("Recommend", "gRPC")], found[("Recommend", "HTTP")]
    targets = {
        "ingest_http_over_grpc": http_ingest.per_s / grpc_ingest.per_s
        if grpc_ingest.per_s
        else None,
        "recommend_p50_http_minus_grpc_ms": http_rec.p50_ms - grpc_rec.p50_ms,
    }
    Console().print(
        f"  targets: HTTP Ingest >= 50% of gRPC → {targets['ingest_http_over_grpc'] or 0:.0%}; "
        f"Recommend p50 HTTP - gRPC at {args.rate:.0f}/s <= 1 ms → "
        f"{targets['recommend_p50_http_minus_grpc_ms']:+.2f} ms"
    )
    return {
        "scenario": "http",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "load_average_1_5_15": os.getloadavg(),
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "handler")},
        "phases": [{**asdict(p), "per_s": p.per_s} for p in phases],
        "targets": targets,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--rate", type=float, default=200.0, help="Recommend calls/s")
    parser.add_argument("--concurrency", type=int, default=8, help="Ingest calls in flight")
    parser.add_argument("--out", type=Path, default=RESULTS)


def main(args: argparse.Namespace) -> int:
    settings = Settings.load()
    http_port = free_port()
    with (
        scratch_tenant(settings) as (tenant, _topic, ingest_key),
        gateway_process("http", http_port=http_port) as gateway,
    ):
        address = gateway.address
        engine = make_engine(settings.database_url, pool_size=1)
        read, _ = ApiKeyStore(make_sessionmaker(engine)).create(tenant, [Scope.READ], "bench")
        engine.dispose()
        phases = asyncio.run(
            run(args, address, f"http://127.0.0.1:{http_port}", ingest_key, read.secret)
        )
    result = report(phases, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"http-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written {path}")
    return 0
