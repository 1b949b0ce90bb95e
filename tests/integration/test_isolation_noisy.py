"""A noisy tenant at 10x its ingest quota is throttled; its neighbour does not notice.

The gateway runs as its own process (`magnetar gateway serve`, as in production). The quiet
tenant sends 200 events/s (20 calls of 10, started on schedule whatever the previous ones
do) and its Ingest latencies are recorded, first alone, then while the noisy tenant — in a
process of its own — offers 10 times its quota (2,000 events/s against 200, in calls of
100 as an SDK would batch them) and ignores every retry delay. Alternating rounds pool the samples, so a pause of the shared machine does not
land on one phase only.

Holds when: the noisy tenant's accepted rate stays at its quota, most of its calls are
refused with RESOURCE_EXHAUSTED and a RetryInfo, the quiet tenant has no error (all in
every measurement), and the quiet tenant's p99 with the noise is within 2x its p99 alone
(in one of up to three measurements: see the test for why).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from bench.gateway import GatewayProcess
from bench.report import percentile
from magnetar.api_key_store import ApiKeyStore
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2
from tenants.admin import TenantAdmin
from tenants.model import Onboarded
from tenants.pulsar_port import translated
from tenants.reconciler import Reconciler
from tenants.store import PostgresTenantStore
from tenants.wiring import role_token_signer
from tests.tenant_fakes import FakeFunctionDeployer

pytestmark = pytest.mark.integration

NOISY_QUOTA = 200  # events/s, burst the same
NOISY_BATCH = 100  # 10x the quota is 20 calls/s of 100 events
QUIET_CALLS_PER_S, BATCH = 20, 10
WINDOWS, WINDOW_S, SETTLE_S = 32, 2.0, 0.3
ATTEMPTS = 3


@pytest.fixture(scope="module")
def tenants(settings: Settings) -> Iterator[tuple[Onboarded, Onboarded]]:
    engine = make_engine(settings.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    pulsar_admin = PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token)
    store = PostgresTenantStore(sessions)
    admin = TenantAdmin(
        # The public gateway produces with each tenant's stored token, signed at onboarding.
        Reconciler(
            translated(pulsar_admin),
            store,
            FakeFunctionDeployer(),
            token_for=role_token_signer(settings),
        ),
        store,
        ApiKeyStore(sessions),
    )
    suffix = uuid.uuid4().hex[:8]
    quiet = admin.create(f"quiet-{suffix}", "Quiet", "standard")
    noisy = admin.create(
        f"noisy-{suffix}",
        "Noisy",
        "free",
        {"ingest_events_per_second": NOISY_QUOTA, "ingest_burst": NOISY_QUOTA},
    )
    try:
        yield quiet, noisy
    finally:
        for onboarded in (quiet, noisy):
            admin.delete(onboarded.record.tenant_id)
        pulsar_admin.close()
        engine.dispose()


def batch(user: str, size: int = BATCH) -> event_service_pb2.IngestRequest:
    events = []
    for n in range(size):
        event = events_pb2.Event(event_id=uuid.uuid4().hex, user_id=f"{user}-{n}", item_id="sku")
        event.type = events_pb2.EVENT_TYPE_VIEW
        event.occurred_at.GetCurrentTime()
        events.append(event)
    return event_service_pb2.IngestRequest(events=events)


@dataclass
class Sample:
    started: float
    latency_ms: float | None  # None: the call failed
    error: str = ""


def quiet_load(address: str, key: str, seconds: float) -> list[Sample]:
    """Calls started on schedule (open loop); latency measured at completion."""
    samples: list[Sample] = []
    lock = threading.Lock()
    metadata = [("authorization", f"Bearer {key}")]
    with grpc.insecure_channel(address) as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        stub.Ingest(batch("warm"), metadata=metadata, timeout=10)
        pending = []
        start = time.perf_counter()
        for n in range(int(seconds * QUIET_CALLS_PER_S)):
            time.sleep(max(0.0, start + n / QUIET_CALLS_PER_S - time.perf_counter()))
            began = time.perf_counter()
            future = stub.Ingest.future(batch(f"q{n}"), metadata=metadata, timeout=10)

            def done(f: Any, began: float = began) -> None:
                error = f.exception()
                sample = (
                    Sample(began, (time.perf_counter() - began) * 1000)
                    if error is None
                    else Sample(began, None, str(error.code()))
                )
                with lock:
                    samples.append(sample)

            future.add_done_callback(done)
            pending.append(future)
        for future in pending:
            with contextlib.suppress(grpc.RpcError):  # recorded by the callback
                future.result(timeout=15)
    return samples


NOISY_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time, uuid
    import grpc
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    from magnetar.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2

    address, key, seconds, rate, size = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

    def request():
        events = []
        for n in range(size):
            e = events_pb2.Event(event_id=uuid.uuid4().hex, user_id=f"n{n}", item_id="sku")
            e.type = events_pb2.EVENT_TYPE_VIEW
            e.occurred_at.GetCurrentTime()
            events.append(e)
        return event_service_pb2.IngestRequest(events=events)

    async def main():
        counts = {"ok": 0, "accepted": 0, "exhausted": 0, "retry_info": 0, "other": 0}
        async with grpc.aio.insecure_channel(address) as channel:
            stub = event_service_pb2_grpc.EventServiceStub(channel)
            metadata = (("authorization", f"Bearer {key}"),)
            requests = [request() for _ in range(50)]

            async def one(n):
                try:
                    reply = await stub.Ingest(requests[n % 50], metadata=metadata, timeout=10)
                    counts["ok"] += 1
                    counts["accepted"] += reply.accepted_count
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        counts["exhausted"] += 1
                        status = rpc_status.from_call(error)
                        if any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details):
                            counts["retry_info"] += 1
                    else:
                        counts["other"] += 1

            print("started", flush=True)
            start = last = time.perf_counter()
            tasks, sent, busy = [], 0, 0.0
            while (now := time.perf_counter()) - start < seconds:
                # Paused (SIGSTOP) between noisy windows: skip the missed slots, no burst,
                # and count only the time it was running.
                if now - last > 0.5:
                    sent = int((now - start) * rate)
                else:
                    busy += now - last
                last = now
                if int((now - start) * rate) > sent:
                    tasks.append(asyncio.ensure_future(one(sent)))
                    sent += 1
                await asyncio.sleep(0.5 / rate)
            await asyncio.gather(*tasks)
            counts["seconds"] = busy
            counts["wall_seconds"] = time.perf_counter() - start
        print(json.dumps(counts), flush=True)

    asyncio.run(main())
    """
)


@dataclass
class Measurement:
    alone_ms: list[float]
    beside_noise_ms: list[float]
    noisy: dict[str, Any]
    quiet_errors: list[str]

    @property
    def p99s(self) -> tuple[float, float]:
        return percentile(self.alone_ms, 99), percentile(self.beside_noise_ms, 99)

    def __str__(self) -> str:
        alone, loud = self.p99s
        return (
            f"quiet tenant Ingest p50/p99: alone {percentile(self.alone_ms, 50):.1f}/"
            f"{alone:.1f} ms ({len(self.alone_ms)} calls), beside the noisy one "
            f"{percentile(self.beside_noise_ms, 50):.1f}/{loud:.1f} ms "
            f"({len(self.beside_noise_ms)} calls); noisy tenant: {self.noisy}"
        )


def measure(address: str, quiet: Onboarded, noisy: Onboarded) -> Measurement:
    calls_per_s = 10 * NOISY_QUOTA // NOISY_BATCH
    # Windows alternate quiet-alone and noisy (the noisy process stopped and continued),
    # in the order ABBA..., so drift and the shared machine's stalls fall on both.
    order = ["alone", "noisy", "noisy", "alone"] * (WINDOWS // 4)
    total_s = len(order) * WINDOW_S
    windows: list[tuple[float, float, str]] = []
    client = subprocess.Popen(
        [
            *(sys.executable, "-c", NOISY_CLIENT, address, noisy.ingest_key.minted.secret),
            *(str(total_s + 5), str(calls_per_s), str(NOISY_BATCH)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "started"
    client.send_signal(signal.SIGSTOP)

    def switch() -> None:
        for phase in order:
            began = time.perf_counter()
            client.send_signal(signal.SIGCONT if phase == "noisy" else signal.SIGSTOP)
            time.sleep(WINDOW_S)
            windows.append((began, time.perf_counter(), phase))
        client.send_signal(signal.SIGCONT)

    switcher = threading.Thread(target=switch)
    switcher.start()
    samples = quiet_load(address, quiet.ingest_key.minted.secret, total_s)
    switcher.join()
    noise = json.loads(client.stdout.readline())
    client.wait(30)

    by_phase: dict[str, list[float]] = {"alone": [], "noisy": []}
    for sample in samples:
        for began, ended, phase in windows:
            # A call started just after a switch may still meet the other phase.
            if began + SETTLE_S <= sample.started < ended and sample.latency_ms is not None:
                by_phase[phase].append(sample.latency_ms)
    errors = [s.error for s in samples if s.latency_ms is None]
    return Measurement(by_phase["alone"], by_phase["noisy"], noise, errors)


# Up to three measurements of about a minute each.
@pytest.mark.timeout(600)
def test_a_noisy_tenant_at_ten_times_its_quota_is_throttled_and_its_neighbour_unharmed(
    tenants: tuple[Onboarded, Onboarded],
    gateway_processes: Callable[..., GatewayProcess],
) -> None:
    quiet, noisy = tenants
    measurements: list[Measurement] = []
    address = gateway_processes("noisy").address
    # The throttling must hold in every measurement. The p99 bound must hold in one:
    # on the shared 2-core machine a broker or disk stall of a second, unrelated to the
    # noise, can land on a few windows of one phase and own its p99 (they show as runs
    # of consecutive slow calls). Noise that really hurt would fail every attempt.
    for _ in range(ATTEMPTS):
        measurement = measure(address, quiet, noisy)
        measurements.append(measurement)
        print(f"\n{measurement}")
        counts = measurement.noisy
        offered = counts["ok"] + counts["exhausted"] + counts["other"]
        assert counts["other"] == 0, counts
        assert counts["exhausted"] >= 0.8 * offered, counts  # ~90% at 10x
        assert counts["retry_info"] == counts["exhausted"], counts
        # Accepted at the quota. Tokens accrue while the noisy process is stopped too,
        # so the bound is the rate over the whole run, plus one burst.
        bound = NOISY_QUOTA * counts["wall_seconds"] * 1.1 + NOISY_QUOTA
        assert counts["accepted"] <= bound, counts
        assert measurement.quiet_errors == []
        expected = (WINDOW_S - SETTLE_S) * QUIET_CALLS_PER_S * WINDOWS / 2
        assert min(len(measurement.alone_ms), len(measurement.beside_noise_ms)) >= (0.8 * expected)
        alone, loud = measurement.p99s
        if loud <= 2 * alone:
            return
    raise AssertionError(
        "the quiet tenant's p99 beside the noisy one exceeded 2x its p99 alone in every "
        "attempt: " + "; ".join(str(m) for m in measurements)
    )
