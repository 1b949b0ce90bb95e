"""Sending import batches through `EventService.ImportEvents`, resending what was not
answered when a stream fails.

Answers come in the order batches were sent, so the unanswered batches are a queue: an
answer settles the oldest. When the stream ends with a status that says "try again"
(UNAVAILABLE, RESOURCE_EXHAUSTED — the import quota, after its RetryInfo delay —,
DEADLINE_EXCEEDED, ABORTED), a new stream first sends the unanswered batches again (same
event ids: counted once) and then goes on. Any other status, or `max_failures` failures in a
row without an answer in between, ends the import with the error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from magnetar.history.batches import Batch
from magnetar.v1 import event_service_pb2 as pb

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)


@dataclass(frozen=True)
class Answer:
    """A settled batch: its answer (None for a batch of rejections only, never sent)."""

    batch: Batch
    response: pb.ImportEventsResponse | None


def retry_delay_s(error: grpc.RpcError, attempt: int) -> float:
    """The server's RetryInfo delay, else an exponential backoff capped at 10 s."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return max(float(info.retry_delay.ToNanoseconds()) / 1e9, 0.05)
    return float(min(10.0, 0.5 * 2**attempt))


class ImportSender:
    def __init__(
        self,
        call: Callable[..., Iterator[pb.ImportEventsResponse]],
        metadata: Sequence[tuple[str, str]],
        *,
        max_failures: int = 8,
        events_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[grpc.RpcError, float], None] | None = None,
    ) -> None:
        self._call = call
        self._metadata = list(metadata)
        self._max_failures = max_failures
        self._rate = events_per_second
        self._sleep = sleep
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self._generation = 0

    def send(self, batches: Iterable[Batch]) -> Iterator[Answer]:
        """Send every batch; yield each as it is settled, in order."""
        source = iter(batches)
        unanswered: deque[Batch] = deque()
        exhausted = False
        failures = 0
        started = time.monotonic()
        sent_events = 0

        def requests(generation: int) -> Iterator[pb.ImportEventsRequest]:
            nonlocal exhausted, sent_events
            with self._lock:
                resend = list(unanswered)
            for batch in resend:
                if batch.events:
                    yield pb.ImportEventsRequest(batch_id=batch.batch_id, events=batch.events)
            while True:
                with self._lock:
                    # A stream that failed must not take batches the next one should send.
                    if generation != self._generation or exhausted:
                        return
                    taken = next(source, None)
                    if taken is None:
                        exhausted = True
                        return
                    unanswered.append(taken)
                batch = taken
                if self._rate:
                    sent_events += len(batch.events)
                    ahead = sent_events / self._rate - (time.monotonic() - started)
                    if ahead > 0:
                        self._sleep(ahead)
                if batch.events:
                    yield pb.ImportEventsRequest(batch_id=batch.batch_id, events=batch.events)

        while True:
            with self._lock:
                self._generation += 1
                generation = self._generation
            try:
                for response in self._call(requests(generation), metadata=self._metadata):
                    failures = 0
                    while True:
                        with self._lock:
                            batch = unanswered.popleft()
                        if batch.events:
                            break
                        yield Answer(batch, None)  # rejections only: nothing was sent
                    assert batch.batch_id == response.batch_id, "answers out of order"
                    yield Answer(batch, response)
            except grpc.RpcError as error:
                code = error.code()
                failures += 1
                if code not in RETRYABLE or failures >= self._max_failures:
                    raise
                delay = retry_delay_s(error, failures)
                if self._on_retry is not None:
                    self._on_retry(error, delay)
                self._sleep(delay)
                continue
            with self._lock:
                rest = list(unanswered)
                unanswered.clear()
                done = exhausted
            for batch in rest:  # only batches without events can be left
                assert not batch.events, "the stream ended before answering every batch"
                yield Answer(batch, None)
            if done:
                return
