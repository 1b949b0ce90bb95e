"""Prometheus metrics of the gateway process: RPCs, and every tenant's pipeline.

* `magnetar_rpc_duration_seconds{method, code, tenant}` — a histogram per gRPC method,
  status code and tenant (the platform key's calls are `tenant="platform"`).
* `magnetar_pipeline_*{tenant}` — accepted, counted and dead-lettered totals, backlog per
  stage subscription, from snapshots a background thread takes (`PipelineMetrics`), so a
  scrape never waits on Pulsar or PostgreSQL.
* `magnetar_freshness_seconds{tenant}` — a histogram of gateway acceptance → committed in
  state, observed for every event the ledger records (read in increments).

Per-stage counters inside the Functions (duplicates dropped, events dead-lettered, late,
materialized, batch commit time, freshness at commit) are Pulsar function metrics: the
broker's `/metrics` exports them as `pulsar_function_user_metric_*{tenant, name, metric}`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from magnetar.observability.collect import pipeline_tenants, snapshot
from magnetar.observability.pipeline_snapshot import PipelineSnapshot
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings

log = logging.getLogger(__name__)

RPC_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FRESHNESS_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def rpc_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "magnetar_rpc_duration_seconds",
        "gRPC call duration at the gateway",
        ("method", "code", "tenant"),
        buckets=RPC_BUCKETS,
        registry=registry,
    )


class PipelineMetrics:
    """Snapshots every tenant's pipeline in the background and exports them on scrape."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry, *, interval_s: float = 10.0
    ) -> None:
        self._settings = settings
        self._interval_s = interval_s
        self._snapshots: dict[str, PipelineSnapshot] = {}
        self._since: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._freshness = Histogram(
            "magnetar_freshness_seconds",
            "gateway acceptance → visible in PostgreSQL state, per event",
            ("tenant",),
            buckets=FRESHNESS_BUCKETS,
            registry=registry,
        )
        registry.register(self)
        self._thread = threading.Thread(target=self._run, name="pipeline-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:
                # Metrics must never take the gateway down; the next round tries again.
                log.exception("pipeline metrics refresh failed")
            self._stop.wait(self._interval_s)

    def refresh(self) -> None:
        settings = self._settings
        with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
            tenants = pipeline_tenants(admin)
            fresh = {
                t: snapshot(admin, settings.database_url, t, counts_only=True) for t in tenants
            }
        with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5) as conn:
            for tenant in tenants:
                self._observe_freshness(conn, tenant)
        with self._lock:
            self._snapshots = fresh

    def _observe_freshness(self, conn: psycopg.Connection[Any], tenant: str) -> None:
        since = self._since.get(tenant)
        with conn.transaction():
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
            if since is None:
                # Start from now: history before the process started is not re-observed.
                row = conn.execute(
                    "SELECT coalesce(max(committed_at), 'epoch'::timestamp) FROM processed_events"
                    " WHERE tenant_id = %s",
                    (tenant,),
                ).fetchone()
                self._since[tenant] = row[0] if row else datetime(1970, 1, 1)
                return
            rows = conn.execute(
                "SELECT committed_at, extract(epoch FROM committed_at - accepted_at)"
                " FROM processed_events WHERE tenant_id = %s AND committed_at > %s"
                " AND accepted_at IS NOT NULL ORDER BY committed_at LIMIT 50000",
                (tenant, since),
            ).fetchall()
        for committed_at, seconds in rows:
            self._freshness.labels(tenant).observe(max(0.0, float(seconds)))
            since = committed_at
        self._since[tenant] = since

    def collect(self) -> Iterator[Any]:
        with self._lock:
            snapshots = list(self._snapshots.values())
        families: dict[str, Any] = {
            "accepted": CounterMetricFamily(
                "magnetar_pipeline_accepted", "events on the raw topic", labels=("tenant",)
            ),
            "counted": CounterMetricFamily(
                "magnetar_pipeline_counted", "events counted in state (ledger)", labels=("tenant",)
            ),
            "dead": CounterMetricFamily(
                "magnetar_pipeline_dead_lettered", "events sent to the DLQ", labels=("tenant",)
            ),
        }
        backlog = GaugeMetricFamily(
            "magnetar_pipeline_backlog",
            "messages not yet acknowledged by a stage",
            labels=("tenant", "stage"),
        )
        for snap in snapshots:
            families["accepted"].add_metric((snap.tenant,), snap.accepted_total)
            families["counted"].add_metric((snap.tenant,), snap.counted_total)
            families["dead"].add_metric((snap.tenant,), snap.dead_lettered_total)
            for stage, messages in snap.backlog.items():
                backlog.add_metric((snap.tenant, stage), messages)
        yield from families.values()
        yield backlog

    def describe(self) -> Iterable[Any]:
        return []
