"""Pulsar's per-message callbacks, from other threads, become one asyncio outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.pulsar_bridge import BatchAck, PublishFailed

OK, TIMEOUT = "Ok", "Timeout"


def test_future_resolves_once_every_callback_from_many_threads_arrived() -> None:
    async def run() -> tuple[bool, list[str]]:
        settled: list[str] = []
        ack = BatchAck(
            asyncio.get_running_loop(), 400, ok=OK, on_settled=lambda: settled.append("x")
        )

        def acknowledge_hundred() -> None:
            for _ in range(100):
                ack.callback(OK, None)

        threads = [threading.Thread(target=acknowledge_hundred) for _ in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.wait_for(ack.future, 5)
        for thread in threads:
            thread.join()
        await asyncio.sleep(0)
        return ack.future.done(), settled

    done, settled = asyncio.run(run())
    assert done
    assert settled == ["x"]


def test_not_done_until_the_last_ack() -> None:
    async def run() -> bool:
        ack = BatchAck(asyncio.get_running_loop(), 2, ok=OK)
        ack.callback(OK)
        await asyncio.sleep(0.01)
        return ack.future.done()

    assert asyncio.run(run()) is False


def test_first_failure_fails_at_once_and_the_budget_settles_only_at_the_end() -> None:
    async def run() -> list[str]:
        events: list[str] = []
        ack = BatchAck(
            asyncio.get_running_loop(), 3, ok=OK, on_settled=lambda: events.append("settled")
        )
        ack.callback(TIMEOUT)
        with pytest.raises(PublishFailed) as failed:
            await asyncio.wait_for(ack.future, 1)
        events.append(f"failed:{failed.value.result}")
        ack.callback(OK)
        ack.callback(TIMEOUT)
        await asyncio.sleep(0.01)
        return events

    assert asyncio.run(run()) == ["failed:Timeout", "settled"]


def test_abandoned_sends_count_as_failures_and_settle_the_batch() -> None:
    async def run() -> list[str]:
        settled: list[str] = []
        ack = BatchAck(asyncio.get_running_loop(), 3, ok=OK, on_settled=lambda: settled.append("x"))
        ack.callback(OK)
        ack.abandon(2)
        with pytest.raises(PublishFailed):
            await asyncio.wait_for(ack.future, 1)
        await asyncio.sleep(0)
        return settled

    assert asyncio.run(run()) == ["x"]


def test_callbacks_after_the_loop_closed_are_ignored() -> None:
    loop = asyncio.new_event_loop()
    ack = BatchAck(loop, 1, ok=OK)
    loop.close()
    ack.callback(OK)  # must not raise on Pulsar's thread
