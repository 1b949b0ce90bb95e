"""Closing a tenant's producer while calls still publish: no call touches the producer once
its flush may have begun (the real client deadlocks the process if one does)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pulsar
import pytest

from gateway.event_publisher import EventPublisher, PublisherOptions, SharedToken, TenantProducer
from magnetar.errors import Unavailable
from magnetar.v1 import events_pb2


class FlushingProducer:
    """Records whether anything was asked of it while a flush was under way."""

    def __init__(self) -> None:
        self.flushing = threading.Event()
        self.release_flush = threading.Event()
        self.touched_while_flushing: list[str] = []
        self.sent = 0

    def _touch(self, what: str) -> None:
        if self.flushing.is_set():
            self.touched_while_flushing.append(what)

    def is_connected(self) -> bool:
        self._touch("is_connected")
        return True

    def send_async(self, data: bytes, callback: Any, **_: Any) -> None:
        self._touch("send_async")
        self.sent += 1
        callback(pulsar.Result.Ok, None)

    def flush(self) -> None:
        self.flushing.set()
        self.release_flush.wait(5)

    def close(self) -> None:
        pass

    def producer_name(self) -> str:
        return "gateway-test-t"


class Client:
    def close(self) -> None:
        pass


def _event() -> events_pb2.Event:
    event = events_pb2.Event(event_id="e1", user_id="u1", item_id="i1")
    event.occurred_at.FromMilliseconds(1_000)
    return event


def _publisher(producer: FlushingProducer) -> EventPublisher:
    publisher = EventPublisher("pulsar://127.0.0.1:1", SharedToken("unused"))
    tenant = TenantProducer(Client(), producer, PublisherOptions())

    async def opened() -> TenantProducer:
        return tenant

    publisher._producers["t"] = asyncio.ensure_future(opened())
    return publisher


@pytest.mark.parametrize("closing", ["close", "close_tenant"])
def test_a_publish_during_a_flush_is_refused_without_touching_the_producer(closing: str) -> None:
    producer = FlushingProducer()

    async def run() -> None:
        publisher = _publisher(producer)
        await publisher.publish("t", [_event()], timeout_s=2)
        assert producer.sent == 1
        tenant = await publisher._producers["t"]
        close = publisher.close() if closing == "close" else publisher.close_tenant("t")
        closing_task = asyncio.ensure_future(close)
        # The flush runs in a worker thread: wait for it there, not on the loop.
        assert await asyncio.to_thread(producer.flushing.wait, 5)
        # A call that already holds the producer (it looked it up before the close).
        with pytest.raises(Unavailable) as refused:
            await tenant.publish([_event()], timeout_s=2)
        assert refused.value.reason == "GATEWAY_CLOSING"
        producer.release_flush.set()
        await closing_task

    asyncio.run(run())
    assert producer.touched_while_flushing == []
    assert producer.sent == 1
