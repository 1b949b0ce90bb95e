"""An event PostgreSQL refuses for its data is isolated and dead-lettered; the rest of its
batch is committed, and every input is acknowledged (real PostgreSQL, stand-in runtime)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from functions import runtime
from functions.batch_commit import BatchCommitter, MaterializeConfig, _Pending
from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent
from magnetar.settings import Settings
from tests.fuzz.test_function_classes_fuzz import DLQ, FakeContext

pytestmark = pytest.mark.integration

NOW = 1_780_000_000_000


def _event(tenant: str, n: int, item: str) -> EnrichedEvent:
    return EnrichedEvent(
        event_id=f"e{n}",
        tenant_id=tenant,
        user_id=f"u{n % 2}",
        session_id="s",
        type=records.VIEW,
        item_id=item,
        occurred_at=NOW + n,
    )


def test_one_refused_event_goes_to_the_dlq_and_the_rest_of_its_batch_counts(
    settings: Settings,
) -> None:
    tenant = f"poison-{uuid.uuid4().hex[:8]}"
    context = FakeContext({})
    committer = BatchCommitter(MaterializeConfig(tenant, settings.database_url, DLQ), context)
    # PostgreSQL's text cannot hold NUL: a permanent refusal of that one event's data.
    items = ["i0", "i1", "bad\x00item", "i3", "i4", "i5", "i6"]
    batch = _Pending()
    for n, item in enumerate(items):
        batch.events.append(_event(tenant, n, item))
        batch.deliveries.append((f"m{n}", "persistent://t/events/raw"))
        batch.accepted_at.append(NOW)
        batch.payloads.append(f"payload-{n}".encode())
        batch.keys.append(f"u{n % 2}")

    committer.flush(batch)

    assert sorted(context.acked) == sorted(f"m{n}" for n in range(len(items)))
    [(topic, payload, conf)] = context.published
    assert (topic, payload) == (DLQ, b"payload-2")
    properties = conf["properties"]
    assert properties[runtime.REASON_PROPERTY] == "STATE_REFUSED"
    assert properties[runtime.SOURCE_STAGE_PROPERTY] == "materialize"
    assert properties[runtime.DETAIL_PROPERTY]
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
        counted = conn.execute(
            "SELECT event_id FROM processed_events WHERE tenant_id = %s ORDER BY event_id",
            (tenant,),
        ).fetchall()
    assert [row[0] for row in counted] == [f"e{n}" for n in range(len(items)) if n != 2]
