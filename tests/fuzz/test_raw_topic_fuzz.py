"""Bad input written straight to a tenant's raw topic (bypassing the gateway) through the real
pipeline: every malformed message ends in the DLQ with a reason, nothing bad is counted, and
the valid events around them keep flowing into state.

The messages are hypothesis-generated (derandomized, so a run is reproducible): random bytes,
near-valid encodings, and well-typed events with anything their types allow, plus the
hand-picked cases fuzzing found — NUL in ids (un-storable in PostgreSQL: it used to hold the
materialize batch back for ever), a device type this build has no name for (it used to raise
in `enrich`, a nack and endless redelivery), a catalog record with a NUL category.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from functions import runtime, wire
from functions.logic.validation import DlqReason
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import catalog_service_pb2, events_pb2
from tests.faults.harness import fault_pipeline
from tests.fuzz.strategies import NOW_MS, events, near_valid

pytestmark = pytest.mark.integration

REASON = runtime.REASON_PROPERTY


def generated(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` reproducible draws from `strategy` (a derandomized hypothesis run)."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def with_id(event: events_pb2.Event, n: int) -> events_pb2.Event:
    """The fuzzed event under a unique id of the same kind (valid, invalid or empty), so that
    `dedupe` never drops one fuzzed message as a repeat of another."""
    original = event.event_id
    if not original:
        pass
    elif original.isascii() and original.isprintable() and " " not in original:
        event.event_id = f"fz-{n}"
    else:
        event.event_id = f"fz {n}"
    return event


def expected_fates(payloads: list[bytes], counted: set[str]) -> Counter[bytes]:
    """The payloads that must be in the DLQ, given which ids were counted.

    One key, so every stage sees the send order: a decodable payload whose id (1 to 128
    characters, what `dedupe` checks) was seen earlier is a repeat and dropped; one whose id
    was counted is the counted copy; everything else must have been dead-lettered."""
    seen: set[str] = set()
    dead: Counter[bytes] = Counter()
    for payload in payloads:
        try:
            event_id = wire.decode_event(payload).event_id
        except wire.UndecodablePayload:
            dead[payload] += 1
            continue
        checkable = 0 < len(event_id) <= 128
        if checkable and event_id in seen:
            continue
        seen.add(event_id)
        if event_id not in counted:
            dead[payload] += 1
    return dead


def valid(
    event_id: str, user: str, item: str = "sku-1", *, at_ms: int | None = None
) -> events_pb2.Event:
    event = events_pb2.Event(
        event_id=event_id, user_id=user, item_id=item, type=events_pb2.EVENT_TYPE_VIEW
    )
    event.occurred_at.FromMilliseconds(at_ms or int(time.time() * 1000))
    return event


def test_malformed_messages_on_the_raw_topic_end_in_the_dlq_while_valid_ones_count(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    fuzzed_events = [with_id(e, n) for n, e in enumerate(generated(events(), 150))]
    payloads: list[tuple[bytes, str]] = [(e.SerializeToString(), "k") for e in fuzzed_events]
    payloads += [(b, "k") for b in generated(st.binary(max_size=300), 40)]
    # A fixed timestamp: generation must not depend on the clock (hypothesis replays it).
    bases = st.integers(0, 10**6).map(
        lambda n: valid(f"nv-{n}", "u-nv", at_ms=NOW_MS).SerializeToString()
    )
    payloads += [(p, "k") for p in generated(near_valid(bases), 40)]

    unknown_device = valid("device-99", "u-dev")
    unknown_device.context.device_type = 99  # type: ignore[assignment]
    nul_user = valid("nul-user", "u\x00x")
    nul_item = valid("nul-item", "u-nul", item="i\x00")
    with fault_pipeline(settings, pulsar_admin, prefix="fz") as pipe:
        catalog = pipe.client.create_producer(pipe.topics.catalog, batching_enabled=False)
        item = catalog_service_pb2.Item(item_id="sku-nul", title="t", categories=["ok", "x\x00"])
        catalog.send(item.SerializeToString(), partition_key="sku-nul")
        catalog.close()
        time.sleep(2)  # the table view of enrich picks the record up

        producer = pipe.producer()
        before = [valid(f"before-{n}", f"u{n % 4}") for n in range(20)]
        pipe.send(producer, before)
        raw = pipe.client.create_producer(pipe.topics.raw, batching_enabled=False)
        for payload, key in payloads:
            raw.send_async(payload, None, partition_key=key)
        for special in (nul_user, nul_item):
            raw.send_async(special.SerializeToString(), None, partition_key="k")
        # A valid event on the same key last: once it is counted, every stage is past the
        # fuzzed messages (Key_Shared keeps one key's order).
        sentinel = valid("sentinel", "k")
        raw.send(sentinel.SerializeToString(), partition_key="k")
        raw.close()
        after = [valid(f"after-{n}", f"u{n % 4}") for n in range(20)]
        after += [unknown_device, valid("catalog-nul", "u-cat", item="sku-nul")]
        pipe.send(producer, after)

        good_ids = {e.event_id for e in [*before, *after, sentinel]}

        def counted_ids() -> set[str]:
            return {str(row[0]) for row in pipe.query("SELECT event_id FROM processed_events")}

        pipe.wait_for(lambda: good_ids <= counted_ids(), timeout_s=180, what="valid events counted")
        counted = counted_ids()
        fuzzed = [p for p, _ in payloads] + [
            nul_user.SerializeToString(),
            nul_item.SerializeToString(),
        ]
        must_be_dead = expected_fates(fuzzed, counted)
        # One more than expected, to see that there are no more.
        expected = sum(must_be_dead.values())
        dead = pipe.dlq_messages(expected + 1, timeout_s=15)
        reasons = Counter(m.properties().get(REASON, "") for m in dead)
        dead_payloads = Counter(m.data() for m in dead)
        missing = must_be_dead - dead_payloads
        assert not missing, [_show(p) for p in missing]
        assert len(dead) == expected, (reasons, [_show(p) for p in dead_payloads - must_be_dead])
        assert set(reasons) <= {r.value for r in DlqReason}, reasons
        assert not {"nul-user", "nul-item"} & counted
        assert dead_payloads[nul_user.SerializeToString()] == 1
        assert dead_payloads[nul_item.SerializeToString()] == 1
        # Nothing counted twice, nothing rejected counted.
        total = pipe.query("SELECT coalesce(sum(events), 0) FROM user_activity")[0][0]
        assert total == len(counted)
        categories = pipe.query("SELECT categories FROM item_categories WHERE item_id = 'sku-nul'")
        assert categories == [(["ok"],)]


def _show(payload: bytes) -> str:
    try:
        return repr(wire.decode_event(payload))[:300]
    except wire.UndecodablePayload:
        return f"undecodable {payload[:40]!r}"
