"""PostgreSQL stops while clients ingest through a real gateway: ingest goes on, and after
the drain every accepted event counts once.

The gateway needs PostgreSQL for two things on the ingest path: the API key of each call and
the tenant's ingest quota, both cached 5 s. The outage lasts well past that, so both caches
must serve their last good answer (`gateway.answer_cache`) or every call fails. The clients
send unary `Ingest` calls — each one authenticates — and resend a batch whose call failed
with a retryable status, under the same event ids.

Beside the gateway, materialize loses its database too, as in `scenarios.postgres_restart`:
the control run (materialize without its ledger, short ack timeout) must double-count, the
protected run must be exact. The scenario also requires that the gateway accepted events
while PostgreSQL was down.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import grpc

from bench.gateway import gateway_process
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2 as pb
from magnetar.v1 import event_service_pb2_grpc
from tests.faults import injectors
from tests.faults.gateway_restart import (
    RETRYABLE,
    drain_and_audit,
    start_uploads,
)
from tests.faults.harness import EventPlan, SendLog, fault_pipeline
from tests.faults.harness import progress as say
from tests.faults.scenarios import SHORT_ACK_TIMEOUT_MS, RunOptions, ScenarioResult, budget
from tests.integration.gateway_harness import remove_tenant_row
from tests.integration.pipeline_support import Pipeline


class IngestUploader:
    """One client's upload of a plan in unary `Ingest` batches, paced, retrying a failed
    batch (same ids) with backoff until it is answered."""

    def __init__(
        self,
        address: str,
        api_key: str,
        plan: EventPlan,
        log: SendLog,
        *,
        batch_size: int = 50,
        rate_per_s: float | None = None,
        deadline_s: float = 600,
    ) -> None:
        self._address = address
        self._metadata = [("authorization", f"Bearer {api_key}")]
        self._plan = plan
        self._log = log
        self._batch_size = batch_size
        self._rate = rate_per_s
        self._deadline = time.monotonic() + deadline_s
        self._stopped = threading.Event()
        self.retries = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="ingest-uploader", daemon=True)

    def start(self) -> IngestUploader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.stop()
            raise AssertionError(
                f"upload not done in {timeout_s:.0f}s: {len(self._log.acked)} of "
                f"{self._plan.count} acknowledged, {self.retries} retries"
            )
        if self.error is not None:
            raise AssertionError(f"uploader failed: {self.error!r}")

    def _main(self) -> None:
        try:
            with grpc.insecure_channel(self._address) as channel:
                stub = event_service_pb2_grpc.EventServiceStub(channel)
                started = time.monotonic()
                for first in range(0, self._plan.count, self._batch_size):
                    if self._rate:
                        pause = started + first / self._rate - time.monotonic()
                        if pause > 0 and self._stopped.wait(pause):
                            return
                    self._send(
                        stub, list(range(first, min(self._plan.count, first + self._batch_size)))
                    )
        except BaseException as exc:
            self.error = exc

    def _send(self, stub: event_service_pb2_grpc.EventServiceStub, seqs: list[int]) -> None:
        backoff = 0.1
        while True:
            if self._stopped.is_set() or time.monotonic() > self._deadline:
                raise TimeoutError("upload did not finish")
            now_ms = int(time.time() * 1000)
            for seq in seqs:
                self._log.on_send(seq)
            request = pb.IngestRequest(events=[self._plan.event(s, now_ms) for s in seqs])
            try:
                reply = stub.Ingest(request, metadata=self._metadata, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                self._log.on_failure()
                self.retries += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            rejected = {r.index for r in reply.rejected_events}
            for index, seq in enumerate(seqs):
                if index not in rejected:
                    self._log.on_ack(seq)
            return


def postgres_down_while_ingesting(
    settings: Settings, admin: PulsarAdmin, options: RunOptions, *, down_s: float = 30.0
) -> list[ScenarioResult]:
    """Ingest through a gateway process; stop PostgreSQL (immediate) for `down_s` mid-upload;
    bring it back, drain, audit. Notes say how many events each run had accepted during the
    outage (`accepted while down: N`)."""
    name = f"postgres stop -m immediate {down_s:.0f}s while ingesting through the gateway"
    say(f"{name}: deploying {len(options.controls)} pipelines")
    with ExitStack() as stack:
        runs: list[tuple[Pipeline, bool]] = []
        for control in options.controls:
            pipe = stack.enter_context(
                fault_pipeline(
                    settings,
                    admin,
                    prefix=f"flq{'c' if control else 'p'}",
                    ack_timeout_ms=SHORT_ACK_TIMEOUT_MS,
                    ledger=not control,
                )
            )
            stack.callback(remove_tenant_row, settings, pipe.tenant)
            runs.append((pipe, control))
        gateway = stack.enter_context(gateway_process("faults"))
        stack.callback(gateway.kill)
        remaining = budget(name, options.budget_s)

        uploads = start_uploads(stack, settings, gateway.address, runs, options, IngestUploader)

        target = int(options.events * options.fault_at)
        deadline = time.monotonic() + remaining()
        while any(log.highest_sent < target for _, _, _, log, _, _ in uploads):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: uploads did not reach event {target}")
            time.sleep(0.05)
        for _, _, _, log, _, probe in uploads:
            probe.start(log.highest_sent)
        say(f"{name}: stopping PostgreSQL at event {target}")
        injectors.postgres_immediate_stop()
        # Past the caches' 5 s first, then count what the gateway accepts meanwhile.
        time.sleep(min(10.0, down_s / 2))
        acked_before = [len(log.snapshot()[1]) for _, _, _, log, _, _ in uploads]
        time.sleep(max(0.0, down_s - min(10.0, down_s / 2)))
        acked_during = [
            len(log.snapshot()[1]) - before
            for (_, _, _, log, _, _), before in zip(uploads, acked_before, strict=True)
        ]
        took = injectors.dev_up()
        notes = [f"postgres down {down_s:.0f}s (+{took:.0f}s dev up)"]
        for *_, probe in uploads:
            probe.healed()
        for *_, uploader, _ in uploads:
            uploader.join(remaining())
        say(f"{name}: uploads done; draining")
        run_notes = [
            [*notes, f"accepted while down: {during}", f"{uploader.retries} retries"]
            for (*_, uploader, _), during in zip(uploads, acked_during, strict=True)
        ]
        return drain_and_audit(name, uploads, run_notes, options, remaining)


def accepted_while_down(result: ScenarioResult) -> int:
    """What the run's notes say the gateway accepted during the outage."""
    prefix = "accepted while down: "
    return next(int(n.removeprefix(prefix)) for n in result.notes if n.startswith(prefix))
