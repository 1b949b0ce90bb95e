"""Fault scenarios: stream tagged events, inject the fault mid-stream, drain, audit.

A scenario runs its variants side by side, each on a tenant of its own, through one and the
same fault: the protected pipeline as deployed, and a *control* with the protection off
(materialize without its processed-event ledger; for client retries also `dedupe` with a
1 ms window). The control must show duplicates — proof that the exact run could fail — and
the protected run must show none and lose nothing. Sharing the fault halves the disruption
of the broker and PostgreSQL scenarios, and makes the two runs comparable.

Used by the tests in this folder and by ``magnetar bench faults``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from magnetar.dev import processes
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tests.faults import injectors
from tests.faults.harness import (
    Audit,
    EventPlan,
    RecoveryProbe,
    Sender,
    SendLog,
    audit,
    drain,
    fault_pipeline,
)
from tests.integration.pipeline_support import Pipeline

# Pulsar's C++ client refuses an ack timeout under 10 s.
SHORT_ACK_TIMEOUT_MS = 10_000
# The broker pings an idle connection every keepAliveIntervalSeconds (30 s in the dev stack)
# and closes it when the previous ping is still unanswered: a stopped process loses its
# connection — and the broker redelivers what it had not acknowledged — after at most 60 s.
KEEPALIVE_CLOSE_S = 60.0


@dataclass(frozen=True)
class RunOptions:
    events: int = 3_000
    rate_per_s: float | None = 400.0
    # Where in the plan the fault starts (fraction of events sent).
    fault_at: float = 0.3
    # Which variants run: False = protected, True = control.
    controls: tuple[bool, ...] = (False, True)
    drain_timeout_s: float = 300


@dataclass
class ScenarioResult:
    scenario: str
    control: bool
    audit: Audit
    recovered: bool
    recover_s: float | None
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario + (" [control]" if self.control else ""),
            "events": self.audit.accepted,
            "sent": self.audit.sent,
            "lost": self.audit.lost,
            "duplicated": self.audit.duplicated,
            "unexpected": self.audit.unexpected,
            "recovered": "yes" if self.recovered else "NO",
            "time to recover s": self.recover_s,
            "notes": "; ".join(self.notes),
        }

    def describe(self) -> str:
        return f"{self.row()} {dict(self.audit.details)}"


# A fault acts on every pipeline of the run and returns notes for the report.
Fault = Callable[[Sequence[Pipeline]], list[str]]


@dataclass
class _Run:
    pipe: Pipeline
    control: bool
    plan: EventPlan
    log: SendLog
    sender: Sender
    probe: RecoveryProbe


def run_with_fault(
    pipes: Sequence[tuple[Pipeline, bool]],
    name: str,
    fault: Fault,
    options: RunOptions,
    *,
    producer: str = "p0",
) -> list[ScenarioResult]:
    """Stream `options.events` tagged events into each pipeline, call `fault` once all of
    them reached `fault_at`, then drain and audit each."""
    runs: list[_Run] = []
    for pipe, control in pipes:
        plan = EventPlan(pipe.tenant, producer, options.events)
        log = SendLog()
        sender = Sender(
            lambda pipe=pipe: pipe.producer(f"{pipe.tenant}-{producer}"),  # type: ignore[misc]
            plan,
            log,
            rate_per_s=options.rate_per_s,
            deadline_s=options.drain_timeout_s + 600,
        )
        runs.append(_Run(pipe, control, plan, log, sender, RecoveryProbe(pipe, plan)))
    for run in runs:
        run.sender.start()
    fault_seq = int(options.events * options.fault_at)
    for run in runs:
        run.sender.wait_sent(fault_seq)
    for run in runs:
        run.probe.start(run.log.highest_sent)
    notes = fault([run.pipe for run in runs])
    for run in runs:
        run.sender.join(options.drain_timeout_s + 600)

    results: list[ScenarioResult | None] = [None] * len(runs)

    def finish(index: int) -> None:
        run = runs[index]
        ledger = not run.control
        run_notes = list(notes)
        recovered = True
        try:
            drain(run.pipe, run.plan, run.log, ledger=ledger, timeout_s=options.drain_timeout_s)
        except AssertionError as exc:
            recovered = False
            run_notes.append(str(exc))
        run.probe.stop()
        result = audit(run.pipe, run.plan, run.log, ledger=ledger)
        recover_s = run.probe.seconds_to_recover(run.log) if ledger else None
        results[index] = ScenarioResult(name, run.control, result, recovered, recover_s, run_notes)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(options.drain_timeout_s + 120)
    return [r for r in results if r is not None]


def run_scenario(
    settings: Settings,
    admin: PulsarAdmin,
    name: str,
    fault: Fault,
    options: RunOptions,
    *,
    ack_timeout_ms: int | None = None,
    control_dedupe_window_ms: int | None = None,
) -> list[ScenarioResult]:
    """Deploy one pipeline per variant (fresh tenants), run the fault, remove them."""
    with ExitStack() as stack:
        pipes = []
        for control in options.controls:
            pipe = stack.enter_context(
                fault_pipeline(
                    settings,
                    admin,
                    prefix=f"flt{'c' if control else 'p'}-{uuid.uuid4().hex[:4]}",
                    ack_timeout_ms=ack_timeout_ms,
                    dedupe_window_ms=control_dedupe_window_ms if control else None,
                    ledger=not control,
                )
            )
            pipes.append((pipe, control))
        return run_with_fault(pipes, name, fault, options)


# --- faults -------------------------------------------------------------------------------


def kill_stages(
    stages: tuple[str, ...], rounds: int = 3, gap_s: float = 0.2, settle_s: float = 3.0
) -> Fault:
    """kill -9 one instance of each stage in turn, in every pipeline, `rounds` times.

    Upstream first and close together, while the stream flows. After each round but the
    last the instances are restarted at once through the admin API (a crash loop, as fast as
    the worker allows); after the last one the worker must notice the crash itself (it checks
    its instances every 30 s). One kill interrupts little — a stage acknowledges within
    milliseconds of its output being stored, and a stage that happens to be waiting on its
    state store has nothing in that window — so several rounds make the control's duplicates
    certain rather than likely."""

    def fault(pipes: Sequence[Pipeline]) -> list[str]:
        slowest = 0.0
        for round_ in range(rounds):
            killed = []
            for stage in stages:
                for pipe in pipes:
                    killed.append((pipe, injectors.kill_instance(pipe.tenant, stage)))
                time.sleep(gap_s)
            if round_ < rounds - 1:
                for pipe, instance in killed:
                    pipe.admin.restart_function(pipe.tenant, "events", instance.name)
                for _, instance in killed:
                    injectors.wait_replaced(instance)
                time.sleep(settle_s)
            else:
                slowest = max(injectors.wait_replaced(instance) for _, instance in killed)
        return [f"{rounds} rounds; last: worker restarted them within {slowest:.0f}s"]

    return fault


def pause_stage(stage: str, seconds: float) -> Fault:
    """SIGSTOP the stage's instance in every pipeline for `seconds`, then SIGCONT."""

    def fault(pipes: Sequence[Pipeline]) -> list[str]:
        instances = [injectors.find_instance(pipe.tenant, stage) for pipe in pipes]
        injectors.pause_instances(instances, seconds)
        replaced = sum(1 for i in instances if not processes.is_alive(i.pid))
        note = f"{stage} stopped {seconds:.0f}s"
        return [note + (f", {replaced} replaced by the worker" if replaced else "")]

    return fault


def postgres_outage(down_s: float) -> Fault:
    def fault(_pipes: Sequence[Pipeline]) -> list[str]:
        injectors.postgres_immediate_stop()
        time.sleep(down_s)
        took = injectors.dev_up()
        return [f"postgres down {down_s:.0f}s (+{took:.0f}s dev up)"]

    return fault


def broker_crash() -> Fault:
    def fault(_pipes: Sequence[Pipeline]) -> list[str]:
        injectors.kill_broker()
        took = injectors.dev_up()
        return [f"broker down {took:.0f}s"]

    return fault


# --- scenarios ----------------------------------------------------------------------------


def function_kill(
    settings: Settings,
    admin: PulsarAdmin,
    options: RunOptions,
    stages: tuple[str, ...] = ("dedupe", "enrich", "materialize"),
    rounds: int = 3,
) -> list[ScenarioResult]:
    name = f"kill -9 {'+'.join(stages)} x{rounds}"
    return run_scenario(settings, admin, name, kill_stages(stages, rounds), options)


def materialize_pause(
    settings: Settings,
    admin: PulsarAdmin,
    options: RunOptions,
    pause_s: float = KEEPALIVE_CLOSE_S + 2,
) -> list[ScenarioResult]:
    return run_scenario(
        settings,
        admin,
        f"SIGSTOP materialize {pause_s:.0f}s (ack timeout {SHORT_ACK_TIMEOUT_MS // 1000}s)",
        pause_stage("materialize", pause_s),
        options,
        ack_timeout_ms=SHORT_ACK_TIMEOUT_MS,
    )


def postgres_restart(
    settings: Settings, admin: PulsarAdmin, options: RunOptions, down_s: float = 20.0
) -> list[ScenarioResult]:
    return run_scenario(
        settings,
        admin,
        f"postgres stop -m immediate {down_s:.0f}s",
        postgres_outage(down_s),
        options,
        ack_timeout_ms=SHORT_ACK_TIMEOUT_MS,
    )


def broker_kill(
    settings: Settings, admin: PulsarAdmin, options: RunOptions
) -> list[ScenarioResult]:
    return run_scenario(settings, admin, "kill -9 broker", broker_crash(), options)
