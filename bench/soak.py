"""`magnetar bench soak`: the platform under steady traffic for a long time, and what grows.

    magnetar bench soak [--minutes 60] [--ingest-rate 300] [--recommend-rate 100]
                        [--catalog-seconds 10] [--onboard-minutes 5] [--report-minutes 5]

One scratch tenant set up as for `magnetar bench recommend` (pipeline deployed, 60,000
generated events of history in PostgreSQL, its catalog, a read and a write key) and a gateway
process of this checkout (`bench.gateway`). Then, all at once until `--minutes` have passed:

* live events through `EventService.Ingest` at `--ingest-rate` events/s (batches of 100;
  the default is about half the pipeline's sustained rate on the 2-core machine);
* `Recommend` at `--recommend-rate` calls/s (the requests of `bench recommend`);
* `CatalogService.UpsertItems` of 50 items (new prices) every `--catalog-seconds`;
* every `--onboard-minutes`, one tenant onboarded and removed through the admin plane's
  `TenantService` (a process of its own, as deployed): CreateTenant, one event and polled
  `Recommend` through the gateway until it shows, DeleteTenant.

Every minute the window is closed into a row: rates, Recommend latency, errors by call, and
the soak tenant's pipeline from `magnetar.observability.collect` (counted/s, backlog,
freshness over the last minute = acceptance → commit from the ledger, dead-lettered), with the
resident memory of each process (`bench.process_memory`). Every `--report-minutes` the new rows
and the memory table so far are printed; at the end all of it, and JSON in bench/results/.

Bounded: calls start on schedule (open loop) with at most `MAX_IN_FLIGHT` of a kind in flight
(more are counted as "not sent"), every call has a deadline, every loop ends at the run's end.
Traffic goes to the loopback gateway only. Tenants it made are removed on the way out, whether
the run ends, fails, is interrupted (Ctrl-C) or terminated (SIGTERM): through the gateway when
it still answers, else in this process through the reconciler.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from itertools import cycle

import grpc
import httpx
import psycopg

from bench import process_memory
from bench.gateway import ADMIN_SERVE, GatewayProcess, gateway_process
from bench.onboard import view
from bench.pipeline import bench_tenant
from bench.recommend import INGEST_BATCH, Clients, Workload, build_workload, seed_state, tenant_keys
from bench.report import BenchReport, default_console, print_table
from bench.soak_window import COLUMNS, Onboarding, PipelineFigures, Window, row
from magnetar import processes
from magnetar.errors import NotFound
from magnetar.observability.collect import snapshot
from magnetar.pulsar_admin import PulsarAdmin, PulsarAdminError
from magnetar.settings import Settings
from magnetar.stack_layout import layouts
from magnetar.v1 import (
    catalog_service_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    personalization_service_pb2_grpc,
    tenant_service_pb2,
    tenant_service_pb2_grpc,
)
from magnetar.v1 import personalization_service_pb2 as pb
from tenants.wiring import tenant_admin

SAMPLE_S = 60.0
MAX_IN_FLIGHT = 500
CATALOG_BATCH = 50
ONBOARD_TIMEOUT_S = 120.0
ONBOARD_POLL_S = 0.5


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 60.0
    ingest_rate: float = 300.0
    recommend_rate: float = 100.0
    catalog_seconds: float = 10.0
    onboard_minutes: float = 5.0
    report_minutes: float = 5.0


@dataclass
class Run:
    """What the loops share: the open window, the finished rows, the tenants to remove."""

    options: SoakOptions
    started_s: float
    window: Window
    roles: process_memory.Roles
    report: BenchReport
    memory: process_memory.MemoryHistory = field(default_factory=process_memory.MemoryHistory)
    onboarded: set[str] = field(default_factory=set)
    printed_rows: int = 0

    @property
    def stop_s(self) -> float:
        return self.started_s + self.options.minutes * 60


# -- the load ------------------------------------------------------------------------------


async def paced(
    run: Run, name: str, call: Callable[[int], Awaitable[None]], per_second: float
) -> None:
    """`call(n)` started on schedule until the run's end, at most MAX_IN_FLIGHT at once."""
    if per_second <= 0:
        return
    in_flight: set[asyncio.Future[None]] = set()
    n = 0
    while (due := run.started_s + n / per_second) < run.stop_s:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if len(in_flight) >= MAX_IN_FLIGHT:
            run.window.failed(name, "not sent")
        else:
            task = asyncio.ensure_future(call(n))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        n += 1
    if in_flight:
        await asyncio.wait(in_flight)  # each call has its deadline


def load_calls(
    run: Run, clients: Clients, workload: Workload
) -> dict[str, tuple[Callable[[int], Awaitable[None]], float]]:
    """Name → (one call counted into the open window, calls per second)."""
    options = run.options
    prices = cycle(range(len(workload.catalog)))

    async def ingest(n: int) -> None:
        try:
            run.window.ingested += await clients.ingest(n)
        except grpc.aio.AioRpcError as error:
            run.window.failed("Ingest", error.code().name)

    async def recommend(n: int) -> None:
        started = time.perf_counter()
        try:
            await clients.recommend(n)
            run.window.recommend_ms.append((time.perf_counter() - started) * 1000)
        except grpc.aio.AioRpcError as error:
            run.window.failed("Recommend", error.code().name)

    async def upsert(n: int) -> None:
        items = []
        for _ in range(min(CATALOG_BATCH, len(workload.catalog))):
            item = catalog_service_pb2.Item()
            item.CopyFrom(workload.catalog[next(prices)])
            item.price = round(item.price * (1 + (n % 7 - 3) / 100), 2)
            items.append(item)
        try:
            await clients.upsert_catalog(items)
            run.window.catalog_upserts += 1
        except grpc.aio.AioRpcError as error:
            run.window.failed("UpsertItems", error.code().name)

    return {
        "Ingest": (ingest, options.ingest_rate / INGEST_BATCH),
        "Recommend": (recommend, options.recommend_rate),
        "UpsertItems": (upsert, 1 / options.catalog_seconds if options.catalog_seconds else 0),
    }


# -- tenants onboarded and removed ---------------------------------------------------------


async def onboard_once(
    run: Run, channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel, admin_key: str
) -> Onboarding:
    """CreateTenant and DeleteTenant (in any case) on the admin plane; one view and Recommend
    until it shows (bounded) on the public gateway."""
    tenants = tenant_service_pb2_grpc.TenantServiceStub(admin_channel)
    events = event_service_pb2_grpc.EventServiceStub(channel)
    personalization = personalization_service_pb2_grpc.PersonalizationServiceStub(channel)
    admin = (("authorization", f"Bearer {admin_key}"),)
    tenant = f"soak-{uuid.uuid4().hex[:8]}"
    user, item = f"user-{uuid.uuid4().hex[:6]}", f"item-{uuid.uuid4().hex[:6]}"
    run.onboarded.add(tenant)
    began = time.monotonic()
    created_s = reflected_s = deleted_s = None
    instance_kb = None
    error = ""
    step = "CreateTenant"
    try:
        created = await tenants.CreateTenant(
            tenant_service_pb2.CreateTenantRequest(
                tenant_id=tenant, display_name="soak benchmark", plan="standard"
            ),
            metadata=admin,
            timeout=60,
        )
        created_s = time.monotonic() - began
        step = "Ingest"
        await events.Ingest(
            event_service_pb2.IngestRequest(events=[view(user, item)]),
            metadata=(("authorization", f"Bearer {created.ingest_key.secret}"),),
            timeout=30,
        )
        step = "Recommend"
        read = (("authorization", f"Bearer {created.read_key.secret}"),)
        while time.monotonic() - began < ONBOARD_TIMEOUT_S:
            reply = await personalization.Recommend(
                pb.RecommendRequest(user_id=user, k=10), metadata=read, timeout=10
            )
            if item in [i.item_id for i in reply.items]:
                reflected_s = time.monotonic() - began
                found = await asyncio.to_thread(process_memory.read_processes)
                instance_kb = process_memory.tenant_instances_kb(found, tenant)
                break
            await asyncio.sleep(ONBOARD_POLL_S)
        else:
            error = f"the event was not recommended within {ONBOARD_TIMEOUT_S:.0f} s"
    except grpc.aio.AioRpcError as failure:
        error = f"{step} {failure.code().name}"
    finally:
        deleting = time.monotonic()
        try:
            await tenants.DeleteTenant(
                tenant_service_pb2.DeleteTenantRequest(tenant_id=tenant),
                metadata=admin,
                timeout=120,
            )
            deleted_s = time.monotonic() - deleting
            run.onboarded.discard(tenant)
        except grpc.aio.AioRpcError as failure:
            if failure.code() == grpc.StatusCode.NOT_FOUND and created_s is None:
                run.onboarded.discard(tenant)  # never created
            else:
                error = (error + "; " if error else "") + f"DeleteTenant {failure.code().name}"
    instance_mb = round(instance_kb / 1024, 1) if instance_kb is not None else None
    return Onboarding(tenant, created_s, reflected_s, deleted_s, error, instance_mb)


async def onboarding(
    run: Run, channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel, admin_key: str
) -> None:
    """One tenant every `onboard_minutes`, the first half a period in."""
    every_s = run.options.onboard_minutes * 60
    if every_s <= 0:
        return
    for k in range(math.ceil(run.options.minutes * 60 / every_s)):
        due = run.started_s + (k + 0.5) * every_s
        if due >= run.stop_s:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        outcome = await onboard_once(run, channel, admin_channel, admin_key)
        run.window.onboardings.append(outcome)


def remove_leftover_tenants(run: Run) -> list[str]:
    """Tenants onboarded but not removed (interrupted, or DeleteTenant failed): removed here,
    in this process through the reconciler. Returns a line for each, saying how it went."""
    lines: list[str] = []
    if not run.onboarded:
        return lines
    with tenant_admin() as admin:
        for tenant in sorted(run.onboarded):
            try:
                admin.delete(tenant)
                lines.append(f"{tenant} removed by the benchmark's process, not the gateway")
            except NotFound:
                pass  # never created, or removed meanwhile
            except Exception as error:  # the next tenant is still to be removed
                lines.append(
                    f"{tenant} NOT removed: {(str(error).splitlines() or [repr(error)])[0]}"
                )
    run.onboarded.clear()
    return lines


# -- samples and tables --------------------------------------------------------------------


def service_pids(settings: Settings) -> tuple[int | None, int | None]:
    """(broker, postmaster) of the local stack, from their pid files."""
    pulsar_layout, postgres_layout = layouts()
    try:
        postmaster = int(postgres_layout.pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        postmaster = None
    return processes.read_pid(pulsar_layout.pid_file), postmaster


def pipeline_figures(admin: PulsarAdmin, settings: Settings, tenant: str) -> PipelineFigures | None:
    try:
        shot = snapshot(admin, settings.database_url, tenant)
    except (PulsarAdminError, psycopg.Error, httpx.HTTPError, OSError):
        # A sample the overloaded stack did not answer in time is a gap in the table, not
        # the end of the run (a 21-minute run died on one admin API read timeout).
        return None
    return PipelineFigures(
        counted_total=shot.counted_total,
        backlog=sum(shot.backlog.values()),
        dead_lettered_total=shot.dead_lettered_total,
        freshness_p50_ms=shot.freshness_p50_ms,
        freshness_p99_ms=shot.freshness_p99_ms,
        function_errors=sum(s.errors for s in shot.stages.values()),
    )


def sample_memory(run: Run) -> None:
    roles = replace(run.roles, onboarded_tenants=frozenset(run.onboarded))
    run.memory.add(time.monotonic() - run.started_s, process_memory.sample(roles))


def print_progress(run: Run) -> None:
    console = default_console()
    new = run.report.rows[run.printed_rows :]
    print_table(console, "magnetar bench soak", COLUMNS, new)
    run.printed_rows = len(run.report.rows)
    columns, rows = run.memory.table(run.options.report_minutes * 60)
    print_table(console, "resident memory (MB)", columns, rows)


async def sampling(run: Run, admin: PulsarAdmin, settings: Settings, tenant: str) -> None:
    """Every SAMPLE_S: close the window into a row, read the pipeline and the memory."""
    counted_before = None
    if first := await asyncio.to_thread(pipeline_figures, admin, settings, tenant):
        counted_before = first.counted_total
    report_every = max(1, round(run.options.report_minutes * 60 / SAMPLE_S))
    samples = math.ceil(run.options.minutes * 60 / SAMPLE_S)
    for k in range(1, samples + 1):
        await asyncio.sleep(
            max(0.0, min(run.started_s + k * SAMPLE_S, run.stop_s) - time.monotonic())
        )
        window, run.window = run.window, Window(time.monotonic())
        figures = await asyncio.to_thread(pipeline_figures, admin, settings, tenant)
        await asyncio.to_thread(sample_memory, run)
        run.report.add(
            **row(
                window,
                run.window.started_s,
                run.started_s,
                figures,
                counted_before,
                os.getloadavg()[0],
            )
        )
        if figures is not None:
            counted_before = figures.counted_total
        if k % report_every == 0 or k == samples:
            print_progress(run)


async def drive(
    run: Run,
    gateway: GatewayProcess,
    admin_plane: GatewayProcess,
    clients: Clients,
    workload: Workload,
    settings: Settings,
    admin: PulsarAdmin,
) -> None:
    await clients.upsert_catalog(workload.catalog)
    run.started_s = time.monotonic()
    run.window = Window(run.started_s)
    await asyncio.to_thread(sample_memory, run)  # before the load: the baseline
    async with (
        grpc.aio.insecure_channel(gateway.address) as channel,
        grpc.aio.insecure_channel(admin_plane.address) as admin_channel,
        asyncio.TaskGroup() as tasks,
    ):
        for name, (call, per_second) in load_calls(run, clients, workload).items():
            tasks.create_task(paced(run, name, call, per_second))
        tasks.create_task(onboarding(run, channel, admin_channel, settings.admin_api_key))
        tasks.create_task(sampling(run, admin, settings, workload.tenant))


# -- the run -------------------------------------------------------------------------------


@contextmanager
def soak_tenant(settings: Settings, admin: PulsarAdmin) -> Iterator[tuple[str, str, str]]:
    """(tenant, read key, write key) of the scratch tenant, as `bench recommend` sets it up."""
    with bench_tenant(settings, admin) as topics, tenant_keys(settings, topics.tenant) as keys:
        yield topics.tenant, *keys


def run(settings: Settings, options: SoakOptions) -> BenchReport:
    report = BenchReport("soak", COLUMNS)
    broker_pid, postmaster_pid = service_pids(settings)
    with (
        PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin,
        soak_tenant(settings, admin) as (tenant, read_key, write_key),
    ):
        history, workload = build_workload(tenant)
        seed_state(settings, tenant, history)
        roles = process_memory.Roles(broker_pid, postmaster_pid, None, os.getpid(), tenant)
        state = Run(options, time.monotonic(), Window(time.monotonic()), roles, report)
        try:
            with (
                gateway_process("soak") as gateway,
                gateway_process("soak-admin", ADMIN_SERVE) as admin_plane,
            ):
                state.roles = replace(roles, gateway_pid=gateway.pid)

                async def go() -> None:
                    clients = Clients(gateway, read_key, write_key, workload)
                    try:
                        await drive(state, gateway, admin_plane, clients, workload, settings, admin)
                    finally:
                        await clients.close()

                asyncio.run(go())
        except KeyboardInterrupt:
            report.notes.append(
                f"interrupted after {(time.monotonic() - state.started_s) / 60:.1f} min"
            )
            report.notes += remove_leftover_tenants(state)
            save_partial(report, state)
            raise
        finally:
            report.notes += remove_leftover_tenants(state)
    finish(report, state)
    return report


def finish(report: BenchReport, state: Run) -> None:
    options = state.options
    _, rows = state.memory.table(options.report_minutes * 60)
    report.details["memory"] = {"table": rows, **state.memory.as_json()}
    report.details["options"] = vars(options)
    report.notes.append(
        f"{options.minutes:g} min: Ingest {options.ingest_rate:g} events/s, Recommend "
        f"{options.recommend_rate:g}/s, {CATALOG_BATCH} catalog items every "
        f"{options.catalog_seconds:g} s, a tenant onboarded and removed every "
        f"{options.onboard_minutes:g} min; freshness = accepted → committed, last minute"
    )
    sizes = [o["instance_mb"] for r in report.rows for o in r["onboardings"] if o["instance_mb"]]
    if sizes:
        report.notes.append(
            "onboarded tenants' pipeline instance at its first recommendation (RSS MB): "
            + ", ".join(f"{mb:g}" for mb in sizes)
        )


def save_partial(report: BenchReport, state: Run) -> None:
    with suppress(OSError):
        finish(report, state)
        print(f"results so far: {report.save()}")


def print_report(report: BenchReport) -> None:
    """The whole run: a row per minute, the notes, then the memory table."""
    report.print()
    rows = report.details.get("memory", {}).get("table", [])
    if rows:
        print_table(default_console(), "resident memory (MB)", list(rows[0]), rows)
