"""What `enrich` lets through, PostgreSQL must store: fuzzed events committed for real.

Materialize retries a failed commit until it succeeds (the database may be down), so an
event that passes validation but cannot be written — a NUL in an id, a number the columns
cannot hold — would block its batch, and the tenant's whole pipeline behind it, for ever.
Each example folds a few fuzzed events that `enrich` accepted and commits them with
`commit_batch` inside a transaction that is rolled back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions import wire
from functions.logic.catalog_view import CatalogItem, CatalogView
from functions.logic.devices import DeviceParser
from functions.logic.enrichment import DeadLetter, enrich
from functions.logic.sessions import SessionTracker
from magnetar.db.state_writer import commit_batch
from magnetar.personalization.records import EnrichedEvent as StateEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.settings import Settings
from magnetar.v1 import events_pb2
from tests.fuzz.strategies import NOW_MS, any_text, events

pytestmark = pytest.mark.integration

TENANT = "fuzz-state"
DEVICES = DeviceParser(cache_size=64)


@pytest.fixture(scope="module")
def connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


def accepted(messages: list[events_pb2.Event], catalog: CatalogView) -> list[StateEvent]:
    """The state events materialize would receive for `messages` (rejected ones dropped)."""
    sessions = SessionTracker()
    out = []
    for message in messages:
        decoded = wire.decode_event(message.SerializeToString())
        outcome = enrich(wire.to_stream_event(decoded, TENANT), NOW_MS, sessions, catalog, DEVICES)
        if isinstance(outcome, DeadLetter):
            continue
        payload = wire.to_enriched_proto(outcome, decoded).SerializeToString()
        out.append(wire.to_state_event(wire.decode_enriched(payload)))
    return out


def _event(**fields: Any) -> events_pb2.Event:
    event = events_pb2.Event(
        event_id="e-1", user_id="u-1", item_id="sku-1", type=events_pb2.EVENT_TYPE_VIEW
    )
    event.occurred_at.FromMilliseconds(NOW_MS)
    for name, value in fields.items():
        setattr(event, name, value)
    return event


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(events(), min_size=1, max_size=6),
    st.lists(st.one_of(any_text, st.just("home")), max_size=3),
)
@example([_event(user_id="u\x00")], [])
@example([_event(session_id="\x00")], [])
@example([_event()], ["a\x00b"])
@example([_event(type=5, value=1e9, quantity=10_000)], [])
def test_every_event_enrich_accepts_can_be_committed(
    connection: psycopg.Connection[Any],
    messages: list[events_pb2.Event],
    categories: list[str],
) -> None:
    catalog = CatalogView()
    catalog.apply("sku-1", CatalogItem("sku-1", "Mug", tuple(categories), 7.5))
    state_events = accepted(messages, catalog)
    if not state_events:
        return
    with connection.transaction(force_rollback=True):
        outcome = commit_batch(connection, TENANT, state_events, SignalSettings(), now_ms=NOW_MS)
    assert outcome.counted == len({e.event_id for e in state_events})
