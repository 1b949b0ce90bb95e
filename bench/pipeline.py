"""`magnetar bench pipeline`: throughput and freshness through the pipeline Function.

Three measurements on one freshly provisioned tenant, in one run:

* baseline — a plain produce → consume round trip on the same broker (one topic, no
  functions): latency at the same offered rate, and how fast the broker alone moves the same
  number of events; the pipeline is reported as a ratio of it;
* freshness — events offered at a steady rate (default 1,000/s); for each, the time from the
  broker acknowledging the send (the gateway's "accepted") to the event being visible in
  PostgreSQL state, seen by a poller that reads the processed-event ledger every few ms;
* throughput — a burst sent as fast as the producer goes; events/s until all are counted.

The events come from `magnetar.workload` when given (Online Retail replay or the generator),
shifted to the present so validation accepts them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pulsar
from rich.progress import Progress

from bench.report import BenchReport, percentile
from functions.deployment import PipelineOptions
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from magnetar.v1 import events_pb2
from tenants.functions_deploy import deploy_pipeline, undeploy_pipeline, wait_running
from tenants.pulsar_setup import provision_pulsar

POLL_INTERVAL_S = 0.002

EventSource = Callable[[int], Iterator[events_pb2.Event]]


def synthetic_events(count: int, seed: str = "") -> Iterator[events_pb2.Event]:
    """Simple stand-in source: 500 users, 2,000 items, views and purchases, occurring now."""
    prefix = seed or uuid.uuid4().hex[:8]
    for n in range(count):
        event = events_pb2.Event(
            event_id=f"{prefix}-{n}",
            user_id=f"u{(n * 7919) % 500}",
            item_id=f"i{(n * 104729) % 2000}",
            type=events_pb2.EVENT_TYPE_PURCHASE if n % 10 == 0 else events_pb2.EVENT_TYPE_VIEW,
        )
        event.occurred_at.FromMilliseconds(int(time.time() * 1000))
        yield event


@dataclass
class Phase:
    sent: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class LedgerPoller:
    """Sees event ids appear in the ledger; records when each became visible."""

    def __init__(self, settings: Settings, tenant: str) -> None:
        self._conn = psycopg.connect(settings.database_url, autocommit=True)
        self._tenant = tenant
        self.visible: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LedgerPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._conn.close()

    def _run(self) -> None:
        # Rows become visible at commit, which can follow a later-stamped row's: look back.
        since = datetime(1970, 1, 1)
        while not self._stop.is_set():
            with self._conn.transaction():
                self._conn.execute(
                    "SELECT set_config('magnetar.tenant', %s, true)", (self._tenant,)
                )
                rows = self._conn.execute(
                    "SELECT event_id, committed_at FROM processed_events"
                    " WHERE tenant_id = %s AND committed_at >= %s",
                    (self._tenant, since - timedelta(seconds=2)),
                ).fetchall()
            seen_at = time.monotonic()
            for event_id, committed_at in rows:
                self.visible.setdefault(event_id, seen_at)
                since = max(since, committed_at)
            self._stop.wait(POLL_INTERVAL_S)


def _paced_send(
    producer: Any,
    events: Sequence[events_pb2.Event],
    rate: float,
    on_acked: Callable[[str, float], None],
    progress: Progress,
    label: str,
) -> float:
    task = progress.add_task(label, total=len(events))
    started = time.monotonic()
    for n, event in enumerate(events):
        due = started + n / rate if rate > 0 else 0
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

        def acked(result: Any, _id: Any, event_id: str = event.event_id) -> None:
            if result == pulsar.Result.Ok:
                on_acked(event_id, time.monotonic())

        producer.send_async(
            event.SerializeToString(), acked, partition_key=event.user_id or event.anonymous_id
        )
        if n % 200 == 0:
            progress.update(task, completed=n)
    producer.flush()
    progress.update(task, completed=len(events))
    return time.monotonic() - started


def _producer(client: pulsar.Client, topic: str) -> Any:
    """The same producer settings for the baseline and the pipeline: batching 1 ms, and
    blocking (not failing) when a burst outruns the pending-message limit."""
    return client.create_producer(
        topic,
        batching_max_publish_delay_ms=1,
        max_pending_messages=10_000,
        block_if_queue_full=True,
    )


def baseline_round_trip(
    client: pulsar.Client,
    topic: str,
    events: Sequence[events_pb2.Event],
    rate: float,
    progress: Progress,
) -> Phase:
    """Plain producer → consumer on the same broker: the floor of this machine."""
    received: dict[str, float] = {}
    done = threading.Event()

    def on_message(consumer: Any, message: Any) -> None:
        received[events_pb2.Event.FromString(message.data()).event_id] = time.monotonic()
        consumer.acknowledge(message)
        if len(received) >= len(events):
            done.set()

    consumer = client.subscribe(topic, "baseline", message_listener=on_message)
    producer = _producer(client, topic)
    acked: dict[str, float] = {}
    seconds = _paced_send(producer, events, rate, acked.__setitem__, progress, "baseline")
    done.wait(timeout=60)
    producer.close()
    consumer.close()
    latencies = [(received[e] - acked[e]) * 1000 for e in acked if e in received]
    return Phase(
        len(received),
        seconds if rate > 0 else max(received.values(), default=0) - min(acked.values(), default=0),
        latencies,
    )


def baselines(
    client: pulsar.Client,
    topics: TenantTopics,
    source: EventSource,
    paced_count: int,
    rate: float,
    burst: int,
    progress: Progress,
) -> tuple[Phase, Phase]:
    """The plain round trip at the paced rate, then as a burst, on topics of their own."""
    topic = f"persistent://{topics.events_namespace}/baseline"
    paced = baseline_round_trip(client, topic, list(source(paced_count)), rate, progress)
    flood = baseline_round_trip(client, topic + "-burst", list(source(burst)), 0, progress)
    return paced, flood


@contextmanager
def bench_tenant(
    settings: Settings, admin: PulsarAdmin, durable_state: bool = True, pipeline: bool = True
) -> Iterator[TenantTopics]:
    """A scratch tenant (removed afterwards), with its pipeline deployed unless told not to."""
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    topics = provision_pulsar(admin, tenant)
    options = PipelineOptions(
        database_url_file=settings.functions_database_url_file, durable_state=durable_state
    )
    try:
        # Inside the try: functions that do not start in time must not outlive the run.
        if pipeline:
            wait_running(admin, tenant, deploy_pipeline(admin, tenant, options))
        yield topics
    finally:
        undeploy_pipeline(admin, tenant)
        for namespace in admin.namespaces(tenant):
            admin.delete_namespace(namespace)
        admin.delete_tenant(tenant)


def pipeline_phase(
    client: pulsar.Client,
    settings: Settings,
    topics: TenantTopics,
    events: Sequence[events_pb2.Event],
    rate: float,
    progress: Progress,
    label: str,
) -> Phase:
    producer = _producer(client, topics.raw)
    acked: dict[str, float] = {}
    ids = {e.event_id for e in events}
    with LedgerPoller(settings, topics.tenant) as poller:
        started = time.monotonic()
        _paced_send(producer, events, rate, acked.__setitem__, progress, label)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not ids.issubset(poller.visible):
            time.sleep(0.05)
        finished = max((poller.visible[e] for e in ids if e in poller.visible), default=started)
        visible = dict(poller.visible)
    producer.close()
    latencies = [(visible[e] - acked[e]) * 1000 for e in acked if e in visible]
    return Phase(sum(1 for e in ids if e in visible), finished - started, latencies)


def run(
    settings: Settings,
    *,
    rate: float = 1000.0,
    seconds: float = 10.0,
    burst: int = 20_000,
    source: EventSource = synthetic_events,
    durable_state: bool = True,
) -> BenchReport:
    report = BenchReport(
        "pipeline",
        ("measurement", "events", "events/s", "p50 ms", "p99 ms", "vs baseline"),
    )
    paced_count = int(rate * seconds)
    with (
        PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin,
        bench_tenant(settings, admin, durable_state) as topics,
        Progress(transient=True) as progress,
    ):
        client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
        try:
            paced_base, burst_base = baselines(
                client, topics, source, paced_count, rate, burst, progress
            )
            fresh = pipeline_phase(
                client,
                settings,
                topics,
                list(source(paced_count)),
                rate,
                progress,
                "pipeline paced",
            )
            flood = pipeline_phase(
                client, settings, topics, list(source(burst)), 0, progress, "pipeline burst"
            )
        finally:
            client.close()
    base_p50 = percentile(paced_base.latencies_ms, 50)
    report.add(
        **{
            "measurement": f"baseline round trip @ {rate:.0f}/s",
            "events": paced_base.sent,
            "p50 ms": base_p50,
            "p99 ms": percentile(paced_base.latencies_ms, 99),
        }
    )
    report.add(
        **{"measurement": "baseline burst", "events": burst_base.sent, "events/s": burst_base.rate}
    )
    fresh_p50 = percentile(fresh.latencies_ms, 50)
    report.add(
        **{
            "measurement": f"pipeline freshness @ {rate:.0f}/s",
            "events": fresh.sent,
            "p50 ms": fresh_p50,
            "p99 ms": percentile(fresh.latencies_ms, 99),
            "vs baseline": f"{fresh_p50 / base_p50:.1f}x latency" if base_p50 else None,
        }
    )
    report.add(
        **{
            "measurement": "pipeline burst (raw → Postgres)",
            "events": flood.sent,
            "events/s": flood.rate,
            "vs baseline": f"{flood.rate / burst_base.rate:.0%} of throughput"
            if burst_base.rate
            else None,
        }
    )
    report.notes.append(
        "freshness = broker ack of the send → event visible in PostgreSQL (ledger polled every "
        f"{POLL_INTERVAL_S * 1000:.0f} ms); baseline = same events, plain producer → consumer"
    )
    return report


def run_produce(
    settings: Settings, *, rate: float = 1000.0, seconds: float = 10.0, burst: int = 20_000
) -> BenchReport:
    """`magnetar bench produce`: the plain produce → consume round trip alone."""
    report = BenchReport("produce", ("measurement", "events", "events/s", "p50 ms", "p99 ms"))
    paced_count = int(rate * seconds)
    with (
        PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin,
        bench_tenant(settings, admin, pipeline=False) as topics,
        Progress(transient=True) as progress,
    ):
        client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
        try:
            paced, flood = baselines(
                client, topics, synthetic_events, paced_count, rate, burst, progress
            )
        finally:
            client.close()
    report.add(
        measurement=f"round trip @ {rate:.0f}/s",
        events=paced.sent,
        **{
            "p50 ms": percentile(paced.latencies_ms, 50),
            "p99 ms": percentile(paced.latencies_ms, 99),
        },
    )
    report.add(measurement="burst", events=flood.sent, **{"events/s": flood.rate})
    report.notes.append("producer (batching 1 ms) → consumer on one topic of this broker")
    return report
