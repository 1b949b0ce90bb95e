"""Producing accepted events into each tenant's raw (or import) topic, acknowledged before we
answer (docs/ingestion.md, "Producing").

One Pulsar client and one producer per tenant, opened on its first call, with the tenant's
own credentials and a name unique to this process (`process_token`), on a namespace with
broker deduplication. Every failure is a domain error — Unavailable, DeadlineExceeded,
ResourceExhausted — after which some events may have been stored: the client resends the
batch and the pipeline recognises repeats by event id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulsar

from gateway.event_validation import EventLike, partition_key
from gateway.limits import PendingBudget
from gateway.pulsar_bridge import BatchAck, PublishFailed
from magnetar.errors import DeadlineExceeded, FailedPrecondition, Unavailable
from magnetar.pulsar_client import quiet_logger
from magnetar.raw_events import SerializedEventSchema, raw_events_topic

log = logging.getLogger(__name__)


class PulsarCredentials(Protocol):
    """Which Pulsar token the gateway uses for a tenant's producer."""

    def token_for(self, tenant_id: str) -> str: ...


@dataclass(frozen=True)
class SharedToken:
    """One token for every tenant (the local stack's superuser) until tenant roles exist."""

    token: str

    def token_for(self, tenant_id: str) -> str:
        return self.token


def default_instance_name() -> str:
    """The replica's readable name (a pod name) in its producers' names."""
    return os.environ.get("MAGNETAR_GATEWAY_INSTANCE") or socket.gethostname()


def process_token() -> str:
    """Different for every publisher: the pid tells processes of one host apart, the random
    part processes of two hosts (or containers) with one name and pid. Two live producers
    with one name would fight over the broker's deduplication sequence: the broker refuses
    the second (ProducerBusy), or takes it over after a disconnect and drops the first's
    messages as repeats when its sequence ids are lower."""
    return f"{os.getpid()}{secrets.token_hex(3)}"


@dataclass(frozen=True)
class PublisherOptions:
    instance_name: str = field(default_factory=default_instance_name)
    process: str = field(default_factory=process_token)
    # Events handed to Pulsar and not yet acknowledged, per tenant (backpressure bound).
    max_pending_events: int = 20_000
    # How long a call waits for room under that bound before RESOURCE_EXHAUSTED.
    admission_wait_s: float = 1.0
    batching_delay_ms: int = 1
    batching_max_messages: int = 1000
    # Pulsar fails a send that the broker has not acknowledged in this time.
    send_timeout_ms: int = 10_000
    # Bounds producer creation and lookups when the broker does not answer.
    operation_timeout_s: int = 10
    connection_timeout_ms: int = 3_000


def _reason(error: BaseException | Any) -> str:
    name = getattr(error, "name", None) or type(error).__name__
    return "PULSAR_" + "".join(f"_{c}" if c.isupper() else c for c in name).strip("_").upper()


class TenantProducer:
    """The producer of one tenant's raw topic."""

    def __init__(
        self, client: pulsar.Client, producer: pulsar.Producer, options: PublisherOptions
    ) -> None:
        self._client = client
        self._producer = producer
        self._options = options
        self.budget = PendingBudget(options.max_pending_events)
        self._closing = False

    @property
    def name(self) -> str:
        return str(self._producer.producer_name())

    async def publish(self, events: Sequence[EventLike], timeout_s: float | None) -> None:
        self._refuse_if_closing()
        if not self._producer.is_connected():
            # Fail fast: queued sends would wait for a reconnect until the send timeout.
            raise Unavailable("Pulsar is not reachable", reason="PULSAR_DISCONNECTED")
        count = len(events)
        wait_s = self._options.admission_wait_s
        await self.budget.acquire(count, wait_s if timeout_s is None else min(wait_s, timeout_s))
        # Closing may have begun while this call waited for room. From here to the last
        # send_async nothing awaits, so no close can begin in between.
        self._refuse_if_closing()
        ack = BatchAck(
            asyncio.get_running_loop(),
            count,
            ok=pulsar.Result.Ok,
            on_settled=lambda: self.budget.release(count),
        )
        sent = 0
        try:
            for event in events:
                self._producer.send_async(
                    event.SerializeToString(),
                    ack.callback,
                    partition_key=partition_key(event),
                    event_timestamp=event.occurred_at.seconds * 1000
                    + event.occurred_at.nanos // 1_000_000,
                )
                sent += 1
        except Exception as exc:
            ack.abandon(count - sent)
            raise Unavailable(f"Pulsar refused a send: {exc}", reason=_reason(exc)) from exc
        await self._acknowledged(ack, timeout_s)

    async def _acknowledged(self, ack: BatchAck, timeout_s: float | None) -> None:
        limit = self._options.send_timeout_ms / 1000 + 1
        try:
            # shield: a caller that gives up must not cancel the settling of the budget.
            await asyncio.wait_for(
                asyncio.shield(ack.future), limit if timeout_s is None else min(limit, timeout_s)
            )
        except PublishFailed as failed:
            raise Unavailable(
                f"Pulsar did not acknowledge every event ({failed.result})",
                reason=_reason(failed.result),
            ) from failed
        except TimeoutError:
            if timeout_s is not None and timeout_s < limit:
                raise DeadlineExceeded(
                    "the deadline passed before Pulsar acknowledged every event"
                ) from None
            raise Unavailable(
                "Pulsar did not acknowledge in time", reason="PULSAR_TIMEOUT"
            ) from None

    def begin_close(self) -> None:
        """Refuse sends from now on. Called on the event loop before `close` runs in a
        worker thread: the client's calls that wait for the C++ producer's lock
        (`is_connected`, `send_async`) hold the GIL while they wait, and `flush` holds that
        lock while the client's I/O thread waits for the GIL to run a send callback — a
        publish on the loop during a flush would stop the whole process for good."""
        self._closing = True

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise Unavailable(
                "the gateway is closing this tenant's producer; send again (to another replica)",
                reason="GATEWAY_CLOSING",
            )

    def close(self) -> None:
        """Flush and close; blocking, so for a worker thread, after `begin_close`."""
        self._closing = True
        try:
            self._producer.flush()
            self._producer.close()
        except Exception:  # closing on shutdown: report, keep closing the rest
            log.warning("closing producer %s failed", self.name, exc_info=True)
        finally:
            self._client.close()


class EventPublisher:
    """Publishes tenants' accepted events; implements the ingestion's `EventSink` port.

    One publisher per stream of a tenant's events: live events to the raw topic (the
    default), imported history to the import topic (`topic_of=import_events_topic`,
    `role="import"`). Each has its own producers and so its own bound of pending sends: an
    import never fills the room live ingest needs.
    """

    def __init__(
        self,
        service_url: str,
        credentials: PulsarCredentials,
        options: PublisherOptions | None = None,
        *,
        topic_of: Callable[[str], str] = raw_events_topic,
        role: str = "",
    ) -> None:
        self._service_url = service_url
        self._credentials = credentials
        self.options = options or PublisherOptions()
        self._topic_of = topic_of
        self._role = role
        self._producers: dict[str, asyncio.Task[TenantProducer]] = {}

    def producer_name(self, tenant_id: str) -> str:
        role = f"{self._role}-" if self._role else ""
        return f"gateway-{role}{self.options.instance_name}-{self.options.process}-{tenant_id}"

    async def publish(
        self, tenant_id: str, events: Sequence[EventLike], timeout_s: float | None
    ) -> None:
        producer = await self._producer_for(tenant_id, timeout_s)
        await producer.publish(events, timeout_s)

    async def _producer_for(self, tenant_id: str, timeout_s: float | None) -> TenantProducer:
        task = self._producers.get(tenant_id)
        if task is None:
            # One creation per tenant even under concurrent first calls; it runs in a
            # thread because pulsar-client's creation blocks on the network.
            task = asyncio.ensure_future(asyncio.to_thread(self._create, tenant_id))
            self._producers[tenant_id] = task
            task.add_done_callback(lambda t: self._forget_failed(tenant_id, t))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            raise Unavailable(
                "Pulsar did not answer in time to open the tenant's producer",
                reason="PULSAR_TIMEOUT",
            ) from None

    def _forget_failed(self, tenant_id: str, task: asyncio.Task[TenantProducer]) -> None:
        failed = task.cancelled() or task.exception() is not None
        if failed and self._producers.get(tenant_id) is task:
            del self._producers[tenant_id]

    def _create(self, tenant_id: str) -> TenantProducer:
        options = self.options
        topic = self._topic_of(tenant_id)
        client = pulsar.Client(
            self._service_url,
            authentication=pulsar.AuthenticationToken(self._credentials.token_for(tenant_id)),
            operation_timeout_seconds=options.operation_timeout_s,
            connection_timeout_ms=options.connection_timeout_ms,
            logger=quiet_logger(),
        )
        try:
            partitions = client.get_topic_partitions(topic)
            if partitions == [topic]:
                # A plain topic here means nobody provisioned the tenant (the broker may
                # auto-create one): refuse rather than lose per-user ordering and scale.
                raise FailedPrecondition(
                    f"tenant {tenant_id!r} has no partitioned topic {topic}; onboard it first",
                    reason="TENANT_NOT_PROVISIONED",
                )
            producer = client.create_producer(
                topic,
                producer_name=self.producer_name(tenant_id),
                schema=SerializedEventSchema(),
                send_timeout_millis=options.send_timeout_ms,
                # The budget bounds what is pending; the client's own queues are sized so
                # they never refuse an admitted batch halfway, on any one partition.
                max_pending_messages=options.max_pending_events,
                max_pending_messages_across_partitions=options.max_pending_events
                * max(len(partitions), 1),
                block_if_queue_full=False,
                batching_enabled=True,
                batching_max_messages=options.batching_max_messages,
                batching_max_publish_delay_ms=options.batching_delay_ms,
            )
        except FailedPrecondition:
            client.close()
            raise
        except pulsar.TopicNotFound as exc:
            client.close()
            raise FailedPrecondition(
                f"tenant {tenant_id!r} has no events namespace; onboard it first",
                reason="TENANT_NOT_PROVISIONED",
            ) from exc
        except Exception as exc:
            client.close()
            raise Unavailable(
                f"cannot open a producer on {topic}: {exc}", reason=_reason(exc)
            ) from exc
        log.info("producer %s on %s", producer.producer_name(), topic)
        return TenantProducer(client, producer, options)

    async def close_tenant(self, tenant_id: str) -> None:
        """Flush and close one tenant's producer (offboarding); the next call reopens it."""
        task = self._producers.pop(tenant_id, None)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            producer = task.result()
            producer.begin_close()
            await asyncio.to_thread(producer.close)

    async def close(self) -> None:
        """Flush and close every producer (graceful shutdown)."""
        tasks = list(self._producers.values())
        self._producers.clear()
        # Creations still running finish first (bounded by Pulsar's operation timeout), so
        # no producer is left open behind our back.
        if pending := [t for t in tasks if not t.done()]:
            await asyncio.wait(pending, timeout=self.options.operation_timeout_s + 1)
        producers = [
            t.result() for t in tasks if t.done() and not t.cancelled() and t.exception() is None
        ]
        for producer in producers:
            producer.begin_close()
        for producer in producers:
            await asyncio.to_thread(producer.close)
