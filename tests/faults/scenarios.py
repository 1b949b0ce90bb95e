"""Fault scenarios: stream tagged events, inject the fault mid-stream, drain, audit.

A scenario runs its variants side by side, each on a tenant of its own, through one and the
same fault: the protected pipeline as deployed, and a *control* with the protection off
(the pipeline without its processed-event ledger; for client retries also dedupe with a
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

from magnetar import processes
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.topics import PIPELINE_FUNCTION, PIPELINE_FUNCTIONS
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
    progress,
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
    # Keep streaming until the fault is over, then stop (`events` is then an upper bound):
    # for faults that last longer than a plan at a modest rate, and must hit work in flight.
    stream_through_fault: bool = False
    # Which variants run: False = protected, True = control.
    controls: tuple[bool, ...] = (False, True)
    drain_timeout_s: float = 300
    # The whole run — streaming, fault, drain — must finish within this, or fail saying what
    # it was waiting for (never hang past a test's timeout).
    budget_s: float = 900


# How each scenario is run by the tests and by `magnetar bench faults`.
SCENARIO_OPTIONS = {
    # Three rounds of kills while 200 events/s flow; the stream goes on until the worker has
    # restarted the last round's instances (`events` is only an upper bound).
    "kill": RunOptions(events=30_000, rate_per_s=200, fault_at=0.02, stream_through_fault=True),
    # Stopped past the 10 s ack timeout and the broker's keepalive (62 s).
    "sigstop": RunOptions(events=3_000, rate_per_s=300),
    # Restarted twice while two clients upload as fast as their window of 8 batches lets
    # them: the gateway always has batches on their way to Pulsar when it is cut, whose
    # answers are lost — the resends the control must double-count.
    "gateway": RunOptions(events=3_000, rate_per_s=None),
    "postgres": RunOptions(events=10_000, rate_per_s=500),
    # The broker kill lands in the middle of an unpaced replay.
    "broker": RunOptions(events=100_000, rate_per_s=None, fault_at=0.3),
}


@dataclass
class ScenarioResult:
    scenario: str
    control: bool
    audit: Audit
    recovered: bool
    # How long the fault lasted, and how long catching up took after it (see RecoveryProbe).
    fault_s: float | None
    catch_up_s: float | None
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
            "fault s": self.fault_s,
            "catch-up s": self.catch_up_s,
            "time to recover s": (
                None
                if self.fault_s is None or self.catch_up_s is None
                else self.fault_s + self.catch_up_s
            ),
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


def budget(name: str, budget_s: float) -> Callable[[], float]:
    """Seconds left of a scenario's budget, from now; raises once it is spent."""
    deadline = time.monotonic() + budget_s

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{name}: over its {budget_s:.0f}s budget")
        return left

    return remaining


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
    remaining = budget(name, options.budget_s)

    runs: list[_Run] = []
    for pipe, control in pipes:
        plan = EventPlan(pipe.tenant, producer, options.events)
        log = SendLog()
        sender = Sender(
            lambda pipe=pipe: pipe.producer(f"{pipe.tenant}-{producer}"),  # type: ignore[misc]
            plan,
            log,
            rate_per_s=options.rate_per_s,
            deadline_s=options.budget_s,
        )
        runs.append(_Run(pipe, control, plan, log, sender, RecoveryProbe(pipe, plan)))
    try:
        for run in runs:
            run.sender.start()
        fault_seq = int(options.events * options.fault_at)
        for run in runs:
            run.sender.wait_sent(fault_seq, timeout_s=remaining())
        for run in runs:
            run.probe.start(run.log.highest_sent)
        progress(f"{name}: fault at event {fault_seq}")
        notes = fault([run.pipe for run in runs])
        for run in runs:
            run.probe.healed()
            if options.stream_through_fault:
                run.sender.finish()
        progress(f"{name}: fault over ({'; '.join(notes)}), finishing the stream")
        for run in runs:
            run.sender.join(remaining())
        results: list[ScenarioResult | None] = [None] * len(runs)
        drain_timeout = min(options.drain_timeout_s, remaining())
        progress(f"{name}: stream done, {[len(r.log.acked) for r in runs]} acked; draining")

        def finish(index: int) -> None:
            run = runs[index]
            ledger = not run.control
            run_notes = list(notes)
            recovered = True
            try:
                drain(run.pipe, run.plan, run.log, ledger=ledger, timeout_s=drain_timeout)
            except AssertionError as exc:
                recovered = False
                run_notes.append(str(exc))
            run.probe.stop()
            result = audit(run.pipe, run.plan, run.log, ledger=ledger)
            catch_up = run.probe.catch_up_s(run.log) if ledger else None
            results[index] = ScenarioResult(
                name, run.control, result, recovered, run.probe.fault_s, catch_up, run_notes
            )

        threads = [
            threading.Thread(target=finish, args=(i,), daemon=True) for i in range(len(runs))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(drain_timeout + 60)
        if any(r is None for r in results):
            raise AssertionError(f"{name}: a drain or audit did not finish")
        progress(f"{name}: drained and audited")
        return [r for r in results if r is not None]
    finally:
        for run in runs:
            run.sender.stop()
            run.probe.stop()


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
    progress(f"{name}: deploying {len(options.controls)} pipelines")
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
    """kill -9 one instance of each stage (the pipeline Function), in every pipeline, `rounds` times, while the stream
    flows (run it with `RunOptions.stream_through_fault`, so that every round hits work in
    flight).

    Downstream first: materialize right after one of its commits shows in PostgreSQL (its most
    exposed moment, see `injectors.kill_after_commit`), then the stages upstream of it, blind,
    `gap_s` apart. After each round but the last the instances are restarted at once through
    the admin API (a crash loop, as fast as the worker allows); after the last one the worker
    must notice the crashes itself (its liveness check runs every 30 s). One blind kill
    interrupts little — a stage that happens to be waiting has nothing in flight — so several
    rounds make the control's duplicates certain rather than likely.

    Nothing else may deploy functions while an instance is down waiting for that liveness
    check: Pulsar's process runtime restarts an instance on the ports it was given when it was
    first started, without holding them meanwhile, and an instance deployed in between can be
    given one of them — the restarted instance then crash-loops on "Address already in use"
    for good (seen in a CI dry run that ran the scenarios side by side). The scenarios
    therefore run one at a time (see `tests.faults.isolated`)."""
    order = list(reversed(stages))  # `stages` go upstream to downstream

    def fault(pipes: Sequence[Pipeline]) -> list[str]:
        slowest = 0.0
        for round_ in range(rounds):
            killed = []
            for stage in order:
                for pipe in pipes:
                    if stage == PIPELINE_FUNCTION:
                        instance = injectors.kill_after_commit(
                            pipe.tenant, pipe.settings.database_url
                        )
                    else:
                        instance = injectors.kill_instance(pipe.tenant, stage)
                    killed.append((pipe, instance))
                time.sleep(gap_s)
            progress(f"kill round {round_ + 1}: {len(killed)} instances killed")
            if round_ < rounds - 1:
                for pipe, instance in killed:
                    pipe.admin.restart_function(pipe.tenant, "events", instance.name)
                for _, instance in killed:
                    injectors.wait_replaced(instance, timeout_s=60)
                time.sleep(settle_s)
            else:
                slowest = max(
                    injectors.wait_replaced(instance, timeout_s=90) for _, instance in killed
                )
        return [f"{rounds} rounds; last: worker restarted them within {slowest:.0f}s"]

    return fault


def pause_stage(stage: str, seconds: float) -> Fault:
    """SIGSTOP the stage's instance in every pipeline for `seconds`, then SIGCONT.

    Each is stopped right after one of its commits shows in PostgreSQL, while its
    acknowledgements are still grouped in the client: what it held then must not count twice
    when the broker, having closed the silent connection, redelivers it. (A blind stop of the
    one-Function pipeline mostly found nothing in flight: the control showed 0 duplicates.)"""

    def fault(pipes: Sequence[Pipeline]) -> list[str]:
        instances = [
            injectors.stop_after_commit(pipe.tenant, pipe.settings.database_url, stage)
            for pipe in pipes
        ]
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
    stages: tuple[str, ...] = PIPELINE_FUNCTIONS,
    rounds: int = 3,
) -> list[ScenarioResult]:
    name = f"kill -9 {'+'.join(stages)} x{rounds}"
    return run_scenario(settings, admin, name, kill_stages(stages, rounds), options)


def pipeline_pause(
    settings: Settings,
    admin: PulsarAdmin,
    options: RunOptions,
    pause_s: float = KEEPALIVE_CLOSE_S + 2,
) -> list[ScenarioResult]:
    return run_scenario(
        settings,
        admin,
        f"SIGSTOP {PIPELINE_FUNCTION} {pause_s:.0f}s (ack timeout {SHORT_ACK_TIMEOUT_MS // 1000}s)",
        pause_stage(PIPELINE_FUNCTION, pause_s),
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
