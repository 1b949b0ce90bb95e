"""The gateway restarts while clients upload over `StreamEvents`, and the clients retry.

A client keeps a window of batches in flight; an answer acknowledges a batch (its accepted
events; the rejected ones are listed by index). When the stream breaks — the gateway went
away — the client reconnects with backoff and resends every batch that was not answered,
under the same event ids. Some of those were already durable in Pulsar (the answer was lost
with the gateway): these resends are the duplicates `dedupe` and the ledger must absorb.

The control run has both protections off: `dedupe` with a 1 ms window and materialize
without its ledger, so a resent event counts twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import grpc

from bench.gateway import gateway_process
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2 as pb
from magnetar.v1 import event_service_pb2_grpc
from tests.faults.harness import (
    EventPlan,
    RecoveryProbe,
    SendLog,
    audit,
    drain,
    fault_pipeline,
    progress,
)
from tests.faults.scenarios import RunOptions, ScenarioResult, budget
from tests.integration.gateway_harness import add_tenant_row, remove_tenant_row
from tests.integration.pipeline_support import Pipeline

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class _Batch:
    batch_id: int
    seqs: list[int]


class StreamUploader:
    """One client's upload of a plan over StreamEvents, resending unanswered batches."""

    def __init__(
        self,
        address: str,
        api_key: str,
        plan: EventPlan,
        log: SendLog,
        *,
        batch_size: int = 50,
        window: int = 8,
        rate_per_s: float | None = None,
        deadline_s: float = 600,
    ) -> None:
        self._address = address
        self._metadata = [("authorization", f"Bearer {api_key}")]
        self._plan = plan
        self._log = log
        self._batch_size = batch_size
        self._window = window
        self._rate = rate_per_s
        self._deadline = time.monotonic() + deadline_s
        self._cond = threading.Condition()
        self._unanswered: dict[int, _Batch] = {}
        self._next_seq = 0
        self._next_batch = 1
        # Each call's request generator belongs to one generation; a broken call's generator
        # must stop (not create batches into a dead stream) once a new call has begun.
        self._generation = 0
        self.reconnects = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="stream-uploader", daemon=True)

    def start(self) -> StreamUploader:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Give up: the scenario ran out of time or failed."""
        with self._cond:
            self._deadline = time.monotonic()
            self._generation += 1
            self._cond.notify_all()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.stop()
            raise AssertionError(
                f"upload not done in {timeout_s:.0f}s: {len(self._log.acked)} of "
                f"{self._plan.count} acknowledged, {self.reconnects} reconnects"
            )
        if self.error is not None:
            raise AssertionError(f"uploader failed: {self.error!r}")

    def _done(self) -> bool:
        return self._next_seq >= self._plan.count and not self._unanswered

    def _requests(
        self, generation: int, resend: list[_Batch], started: float
    ) -> Iterator[pb.StreamEventsRequest]:
        """Resends first, then new batches, never more than `window` unanswered."""
        now_ms = int(time.time() * 1000)
        for batch in resend:
            yield self._request(batch, now_ms)
        while True:
            with self._cond:
                while (
                    len(self._unanswered) >= self._window
                    and generation == self._generation
                    and time.monotonic() < self._deadline
                ):
                    self._cond.wait(0.1)
                if (
                    generation != self._generation
                    or self._next_seq >= self._plan.count
                    or time.monotonic() > self._deadline
                ):
                    break
                first = self._next_seq
                last = min(self._plan.count, first + self._batch_size)
                batch = _Batch(self._next_batch, list(range(first, last)))
                self._next_batch += 1
                self._next_seq = last
                self._unanswered[batch.batch_id] = batch
            if self._rate:
                pause = started + first / self._rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            yield self._request(batch, int(time.time() * 1000))
        # Keep the stream open until the last answers are in, then end it.
        with self._cond:
            while (
                self._unanswered
                and generation == self._generation
                and time.monotonic() < self._deadline
            ):
                self._cond.wait(0.1)

    def _request(self, batch: _Batch, now_ms: int) -> pb.StreamEventsRequest:
        for seq in batch.seqs:
            self._log.on_send(seq)
        return pb.StreamEventsRequest(
            batch_id=batch.batch_id, events=[self._plan.event(s, now_ms) for s in batch.seqs]
        )

    def _answered(self, response: pb.StreamEventsResponse) -> None:
        with self._cond:
            batch = self._unanswered.pop(response.batch_id, None)
            self._cond.notify_all()
        if batch is None:
            return
        rejected = {r.index for r in response.rejected_events}
        for index, seq in enumerate(batch.seqs):
            if index not in rejected:
                self._log.on_ack(seq)

    def _main(self) -> None:
        started = time.monotonic()
        backoff = 0.1
        try:
            while not self._done():
                if time.monotonic() > self._deadline:
                    raise TimeoutError("upload did not finish")
                with self._cond:
                    self._generation += 1
                    generation = self._generation
                    resend = sorted(self._unanswered.values(), key=lambda b: b.batch_id)
                    self._cond.notify_all()
                try:
                    with grpc.insecure_channel(self._address) as channel:
                        stub = event_service_pb2_grpc.EventServiceStub(channel)
                        responses = stub.StreamEvents(
                            self._requests(generation, resend, started),
                            metadata=self._metadata,
                            timeout=120,
                            wait_for_ready=True,
                        )
                        for response in responses:
                            self._answered(response)
                            backoff = 0.1
                except grpc.RpcError as exc:
                    if exc.code() not in RETRYABLE:
                        raise
                    with self._cond:
                        self._generation += 1
                        self._cond.notify_all()
                    self._log.on_failure()
                    self.reconnects += 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        except BaseException as exc:
            self.error = exc


def _ingest_key(settings: Settings, tenant: str) -> str:
    add_tenant_row(settings, tenant)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        new_key, _ = ApiKeyStore(make_sessionmaker(engine)).create(
            tenant, [Scope.INGEST], "fault suite"
        )
    finally:
        engine.dispose()
    return new_key.secret


def gateway_restart(
    settings: Settings,
    admin: PulsarAdmin,
    options: RunOptions,
    *,
    restarts: int = 2,
    down_s: float = 1.0,
) -> list[ScenarioResult]:
    """Stream through a real gateway, restart it `restarts` times mid-upload, drain, audit."""
    name = f"gateway restart x{restarts} during StreamEvents"
    progress(f"{name}: deploying {len(options.controls)} pipelines")
    with ExitStack() as stack:
        runs: list[tuple[Pipeline, bool]] = []
        for control in options.controls:
            pipe = stack.enter_context(
                fault_pipeline(
                    settings,
                    admin,
                    prefix=f"flg{'c' if control else 'p'}",
                    dedupe_window_ms=1 if control else None,
                    ledger=not control,
                )
            )
            stack.callback(remove_tenant_row, settings, pipe.tenant)
            runs.append((pipe, control))
        # A process, not a server in this one: a crash is `kill -9` (every answer not yet
        # written is lost, with whatever the Pulsar client still held) and none of the
        # gateway's shutdown path runs here (an in-process server stopped without grace
        # could hang the whole process: docs/faults.md, bugs found).
        gateway = stack.enter_context(gateway_process("faults"))
        stack.callback(gateway.kill)
        remaining = budget(name, options.budget_s)

        uploads = start_uploads(stack, settings, gateway.address, runs, options, StreamUploader)

        notes: list[str] = []
        for step in range(restarts):
            # The restarts are spread over the upload: the first at `fault_at`.
            target = int(
                options.events * (options.fault_at + step * (1 - options.fault_at) / (restarts + 1))
            )
            _wait_sent([log for *_, log, _, _ in uploads], target, remaining())
            if step == 0:
                for _, _, _, log, _, probe in uploads:
                    probe.start(log.highest_sent)
            progress(f"{name}: restart {step + 1} at event {target}")
            # A crash: calls in progress are cut, answers for durable batches are lost.
            gateway.kill()
            time.sleep(down_s)
            gateway.start()
        for *_, probe in uploads:
            probe.healed()
        for *_, uploader, _ in uploads:
            uploader.join(remaining())
        progress(f"{name}: uploads done; draining")
        run_notes = [[*notes, f"{u.reconnects} reconnects"] for *_, u, _ in uploads]
        return drain_and_audit(name, uploads, run_notes, options, remaining)


def start_uploads(
    stack: ExitStack,
    settings: Settings,
    address: str,
    runs: Sequence[tuple[Pipeline, bool]],
    options: RunOptions,
    uploader: Callable[..., Any],
) -> list[tuple[Pipeline, bool, EventPlan, SendLog, Any, RecoveryProbe]]:
    """Per run, a client (`uploader`: `StreamUploader`, or the one-call Ingest uploader)
    sending its plan through the gateway at `address`, and a recovery probe; both stopped
    when `stack` closes."""
    uploads = []
    for pipe, control in runs:
        plan = EventPlan(pipe.tenant, "grpc", options.events)
        log = SendLog()
        client = uploader(
            address,
            _ingest_key(settings, pipe.tenant),
            plan,
            log,
            rate_per_s=options.rate_per_s,
            deadline_s=options.budget_s,
        ).start()
        stack.callback(client.stop)
        probe = RecoveryProbe(pipe, plan)
        stack.callback(probe.stop)
        uploads.append((pipe, control, plan, log, client, probe))
    return uploads


def drain_and_audit(
    name: str,
    uploads: Sequence[tuple[Pipeline, bool, EventPlan, SendLog, object, RecoveryProbe]],
    notes: Sequence[list[str]],
    options: RunOptions,
    remaining: Callable[[], float],
) -> list[ScenarioResult]:
    """Drain each upload's pipeline, audit it; `notes[i]` go into the i-th result."""
    results = []
    for (pipe, control, plan, log, _, probe), run_notes in zip(uploads, notes, strict=True):
        recovered = True
        try:
            timeout_s = min(options.drain_timeout_s, remaining())
            drain(pipe, plan, log, ledger=not control, timeout_s=timeout_s)
        except AssertionError as exc:
            recovered = False
            run_notes.append(str(exc))
        probe.stop()
        result = audit(pipe, plan, log, ledger=not control)
        catch_up = probe.catch_up_s(log) if not control else None
        results.append(
            ScenarioResult(name, control, result, recovered, probe.fault_s, catch_up, run_notes)
        )
    progress(f"{name}: drained and audited")
    return results


def _wait_sent(logs: Sequence[SendLog], seq: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while any(log.highest_sent < seq for log in logs):
        if time.monotonic() > deadline:
            raise AssertionError(f"uploads did not reach event {seq}")
        time.sleep(0.02)
