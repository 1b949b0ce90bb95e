"""The real pipeline and the offline evaluation's path (fold → in-memory state) agree.

`magnetar eval` measures quality by folding events in memory; this test sends a generated
stream through the gateway-facing raw topic, the three Functions and PostgreSQL, and checks
that every user's recommendations from PostgreSQL match those of the in-memory fold of the
same events — so the measured quality is the served quality.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from magnetar.catalog_topic import publish_items
from magnetar.db.state_reader import PostgresStateReader
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.recommend import RecommendRequest, recommend
from magnetar.personalization.settings import TenantPersonalization
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.workload.generator import GeneratorSettings, generate
from magnetar.workload.wire import catalog_items, wire_events
from tests.integration.pipeline_support import running_pipeline

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_recommendations_served_from_the_pipeline_match_the_offline_fold(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin, prefix="agree") as pipe:
        generator = GeneratorSettings(
            tenant_id=pipe.tenant,
            users=40,
            items=80,
            categories=6,
            late_share=0.0,
            duplicate_share=0.05,
            events_per_second=40.0,
        )
        stream = list(generate(generator, seed=11, max_events=600))
        # Shift the stream so it ends a minute ago: recent, not late, not in the future.
        shift = int(time.time() * 1000) - 60_000 - max(e.occurred_at for e in stream)
        sent = stream  # cancellations included: EVENT_TYPE_CANCEL
        publish_items(pipe.client, pipe.tenant, catalog_items(sent))
        time.sleep(1)  # the catalog reaches enrich's view before the events
        pipe.send(pipe.producer(), list(wire_events(sent, shift)))
        unique = {e.event_id for e in sent}
        pipe.wait_for(lambda: pipe.counted() == len(unique), timeout_s=120, what="all events")

        personalization = TenantPersonalization()
        memory = MemoryState(personalization.signals)
        shifted = [dataclasses.replace(e, occurred_at=e.occurred_at + shift) for e in sent]
        now = int(time.time() * 1000)
        memory.apply(fold_events(shifted, personalization.signals, {}, now + 5 * 60_000))

        users = sorted({e.user_id for e in sent})
        with ConnectionPool(settings.database_url, min_size=1, max_size=2, open=True) as pool:
            served = PostgresStateReader(pool, personalization.signals)
            compared = personal = 0
            for user in users:
                request = RecommendRequest(pipe.tenant, user, k=10, exclude_purchased=True)
                online: list[Any] = recommend(served, request, personalization, now)
                offline: list[Any] = recommend(memory, request, personalization, now)
                assert [r.item_id for r in online] == [r.item_id for r in offline], user
                assert [r.score for r in online] == pytest.approx(
                    [r.score for r in offline], rel=1e-6
                )
                compared += 1
                personal += any(r.strategy != "trending" for r in online)
        assert compared == len(users) >= 20
        # Not an agreement on empty or generic lists: most users get personal candidates.
        assert personal >= compared // 2
