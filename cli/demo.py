"""The demo behind `make run`: from nothing to a tenant whose recommendations move live.

1. the local stack (Pulsar standalone + functions worker, PostgreSQL, migrations, gateway);
2. a `demo` tenant: its Pulsar namespaces, policies, topics and schemas, its pipeline
   Functions, its row in PostgreSQL and an ingest key;
3. the generator's catalog into the tenant's compacted catalog topic;
4. generated events sent through the gateway's `EventService.Ingest` in real time, while a
   live view shows the pipeline and the recommendations of a few users as they change.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from psycopg_pool import ConnectionPool
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from cli.dev import stack
from functions.deployment import PipelineOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.catalog_topic import publish_items
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.db.state_reader import PostgresStateReader
from magnetar.observability.collect import snapshot
from magnetar.observability.pipeline_snapshot import PipelineSnapshot, status_row
from magnetar.personalization.recommend import RecommendRequest, recommend
from magnetar.personalization.settings import TenantPersonalization
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2, event_service_pb2_grpc
from magnetar.workload.generator import GeneratorSettings, generate
from magnetar.workload.wire import catalog_items, wire_events
from tenants.functions_deploy import deploy_pipeline, wait_running
from tenants.pulsar_setup import provision_pulsar
from tenants.wiring import issue_producer_token

TENANT = "demo"
BATCH = 50


@dataclass(frozen=True)
class DemoOptions:
    seconds: float = 60.0
    rate: float = 200.0
    users_shown: int = 3
    seed: int = 7


def onboard(settings: Settings, console: Console) -> str:
    """Everything the demo tenant needs (idempotent); returns a fresh ingest key."""
    with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
        console.print(f"provisioning tenant [bold]{TENANT}[/bold] in Pulsar…")
        provision_pulsar(admin, TENANT)
        console.print("deploying the pipeline (dedupe, enrich, materialize)…")
        options = PipelineOptions(database_url_file=settings.functions_database_url_file)
        wait_running(admin, TENANT, deploy_pipeline(admin, TENANT, options))
    with psycopg.connect(settings.database_owner_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenants (tenant_id, display_name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (TENANT, "Demo shop"),
        )
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        sessions = make_sessionmaker(engine)
        # The public gateway produces with the tenant's stored token (as onboarded tenants do).
        issue_producer_token(settings, sessions, TENANT)
        minted, _ = ApiKeyStore(sessions).create(
            TENANT, [Scope.INGEST, Scope.READ], "magnetar demo"
        )
    finally:
        engine.dispose()
    return minted.secret


def _events(options: DemoOptions) -> tuple[Iterator[Any], list[Any]]:
    generator = GeneratorSettings(tenant_id=TENANT, events_per_second=options.rate, users=300)
    # The catalog is what the first stretch of the stream mentions; the rest of the stream
    # is regenerated from the same seed, so it is the same events.
    preview = list(generate(generator, options.seed, max_events=int(options.rate * 600)))
    shift = int(time.time() * 1000) - generator.start_ms
    stream = wire_events(generate(generator, options.seed), shift)
    return stream, catalog_items(preview)


def _recommendations(reader: PostgresStateReader, users: list[str]) -> Table:
    table = Table(title="recommendations, live from PostgreSQL state")
    for column in ("user", "#", "item", "score", "why"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    now = int(time.time() * 1000)
    for user in users:
        request = RecommendRequest(TENANT, user, k=3, exclude_purchased=True)
        results = recommend(reader, request, TenantPersonalization(), now)
        for rank, item in enumerate(results, 1):
            table.add_row(
                user if rank == 1 else "", str(rank), item.item_id, f"{item.score:.2f}", item.reason
            )
        table.add_section()
    return table


def run(options: DemoOptions, console: Console | None = None) -> int:
    console = console or Console()
    console.print("[bold]magnetar demo[/bold]: starting the platform on this machine…")
    report = stack.up()
    console.print(f"platform ready in {report.total:.1f} s")
    settings = Settings.load()
    key = onboard(settings, console)
    stream, items = _events(options)
    client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
    try:
        console.print(f"publishing a catalog of {publish_items(client, TENANT, items):,} items…")
    finally:
        client.close()

    channel = grpc.insecure_channel(f"{settings.grpc_host}:{settings.grpc_port}")
    ingest = event_service_pb2_grpc.EventServiceStub(channel)
    metadata = (("authorization", f"Bearer {key}"),)
    pool = ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True)
    reader = PostgresStateReader(pool)
    shown: list[str] = []
    previous: PipelineSnapshot | None = None
    accepted = 0
    started = time.monotonic()
    admin = PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token)
    try:
        with Live(console=console, auto_refresh=False) as live:
            next_view = 0.0
            while (elapsed := time.monotonic() - started) < options.seconds:
                due = int(elapsed * options.rate) + BATCH
                batch = list(itertools.islice(stream, max(0, due - accepted)))
                if batch:
                    reply = ingest.Ingest(
                        event_service_pb2.IngestRequest(events=batch),
                        metadata=metadata,
                        timeout=10,
                    )
                    accepted += reply.accepted_count
                    for event in batch:
                        if len(shown) < options.users_shown and event.user_id not in shown:
                            shown.append(event.user_id)
                if time.monotonic() >= next_view:
                    current = snapshot(admin, settings.database_url, TENANT)
                    row = status_row(current, previous)
                    previous = current
                    pipeline = Table(
                        title=f"tenant {TENANT}: {accepted:,} events accepted by the gateway"
                    )
                    for column in (
                        "counted",
                        "counted/s",
                        "backlog",
                        "fresh p50 ms",
                        "fresh p99 ms",
                        "DLQ",
                        "functions",
                    ):
                        pipeline.add_column(column, justify="right")
                    pipeline.add_row(
                        f"{current.counted_total:,}",
                        f"{row.counted_per_s or 0:,.0f}",
                        f"{row.backlog:,}",
                        f"{row.freshness_p50_ms or 0:,.0f}",
                        f"{row.freshness_p99_ms or 0:,.0f}",
                        f"{row.dead_lettered:,}",
                        row.functions,
                    )
                    live.update(Group(pipeline, _recommendations(reader, shown)), refresh=True)
                    next_view = time.monotonic() + 2.0
                time.sleep(BATCH / options.rate / 2)
    finally:
        admin.close()
        pool.close()
        channel.close()
    console.print(
        f"\nsent {accepted:,} events in {options.seconds:.0f} s. The platform keeps running:\n"
        "  .venv/bin/magnetar status            # live view of every tenant's pipeline\n"
        "  .venv/bin/magnetar functions status --tenant demo\n"
        "  .venv/bin/magnetar dev down          # stop everything"
    )
    return 0
