"""Fill `PipelineSnapshot`s from the Pulsar admin API and the ledger in PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from magnetar.db.ledger import counted_events
from magnetar.observability.pipeline_snapshot import STAGES, PipelineSnapshot, StageHealth
from magnetar.pulsar_admin import PulsarAdmin, PulsarAdminError
from magnetar.topics import TenantTopics, subscription_of

_FRESHNESS = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
FROM (
  SELECT extract(epoch FROM committed_at - accepted_at) * 1000 AS ms FROM processed_events
  WHERE tenant_id = %(tenant)s AND accepted_at IS NOT NULL
    AND committed_at > (clock_timestamp() AT TIME ZONE 'UTC') - interval '1 minute'
) recent
"""


def pipeline_tenants(admin: PulsarAdmin) -> list[str]:
    """Tenants that have an events namespace (platform tenants like `public` do not)."""
    return sorted(t for t in admin.tenants() if f"{t}/events" in admin.namespaces(t))


def _stats(admin: PulsarAdmin, topic: str, partitioned: bool) -> dict[str, Any]:
    try:
        return admin.topic_stats(topic, partitioned=partitioned)
    except PulsarAdminError:
        return {}


def _stage(admin: PulsarAdmin, tenant: str, stage: str) -> StageHealth | None:
    try:
        status = admin.function_status(tenant, "events", stage)
    except PulsarAdminError:
        return None
    errors = sum(
        int(i.get("status", {}).get("numUserExceptions", 0))
        + int(i.get("status", {}).get("numSystemExceptions", 0))
        for i in status.get("instances", [])
    )
    return StageHealth(int(status.get("numRunning", 0)), int(status.get("numInstances", 0)), errors)


def _stages(admin: PulsarAdmin, tenant: str) -> dict[str, StageHealth]:
    return {stage: health for stage in STAGES if (health := _stage(admin, tenant, stage))}


def snapshot(
    admin: PulsarAdmin, database_url: str, tenant: str, *, counts_only: bool = False
) -> PipelineSnapshot:
    """Counts and backlog, then (unless `counts_only`) freshness and function health.

    `counts_only` is what the gateway's exporter needs every few seconds for every tenant:
    a function's status makes the worker ask each of its instances over gRPC, three
    functions per tenant, and the exporter would throw the answers away.
    """
    topics = TenantTopics(tenant)
    raw = _stats(admin, topics.raw, partitioned=True)
    accepted = int(raw.get("msgInCounter", 0))
    subscriptions = raw.get("subscriptions", {})
    backlog = {
        stage: int(subscriptions.get(subscription_of(stage), {}).get("msgBacklog", 0))
        for stage in STAGES
    }
    dead = int(_stats(admin, topics.dlq, partitioned=False).get("msgInCounter", 0))
    with (
        psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn,
        conn.transaction(),
    ):
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        counted = counted_events(conn, tenant)
        p50 = p99 = None
        if not counts_only:
            p50, p99 = conn.execute(_FRESHNESS, {"tenant": tenant}).fetchone() or (None, None)
    stages = {} if counts_only else _stages(admin, tenant)
    return PipelineSnapshot(
        tenant=tenant,
        at_s=time.monotonic(),
        accepted_total=accepted,
        counted_total=counted,
        dead_lettered_total=dead,
        backlog=backlog,
        freshness_p50_ms=float(p50) if p50 is not None else None,
        freshness_p99_ms=float(p99) if p99 is not None else None,
        stages=stages,
    )
