"""An in-memory `ServingState`: the personalization core's memory state plus a catalog."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from magnetar.personalization import records
from magnetar.personalization.decay import MINUTE_MS
from magnetar.personalization.fold import fold_events
from magnetar.personalization.memory_state import MemoryState
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.serving.personalization import CatalogFact
from tests.unit.personalization.builders import T0, event

TENANT = "acme"
NOW = T0 + 60 * MINUTE_MS


class FakeServingState(MemoryState):
    def __init__(self, events: Sequence[EnrichedEvent] = ()) -> None:
        super().__init__(SignalSettings())
        self.catalog: dict[tuple[str, str], CatalogFact] = {}
        self.requests: list[str] = []
        self.failure: Exception | None = None
        self.facts_asked: list[tuple[str, ...]] = []
        if events:
            self.apply(fold_events(events, self.signals(TENANT)))

    @contextmanager
    def request(self, tenant_id: str) -> Iterator[None]:
        self.requests.append(tenant_id)
        if self.failure is not None:
            raise self.failure
        yield

    def catalog_facts(self, tenant_id: str, item_ids: Sequence[str]) -> Mapping[str, CatalogFact]:
        self.facts_asked.append(tuple(item_ids))
        return {i: self.catalog[(tenant_id, i)] for i in item_ids if (tenant_id, i) in self.catalog}

    def put_item(
        self,
        item_id: str,
        title: str = "",
        categories: tuple[str, ...] = (),
        visible: bool = True,
        tenant_id: str = TENANT,
    ) -> None:
        self.catalog[(tenant_id, item_id)] = CatalogFact(title, categories, visible)


def shop() -> list[EnrichedEvent]:
    """Tents sell with sleeping bags (outdoor); mugs are the best-seller (kitchen)."""
    events = []
    for n in range(6):
        session = f"camp{n}"
        for offset, item in enumerate(("tent", "sleeping-bag")):
            events.append(
                event(
                    records.PURCHASE,
                    item,
                    user_id=f"c{n}",
                    session_id=session,
                    at=T0 + n * 10 + offset,
                    categories=("outdoor",),
                )
            )
    # Lanterns go with tents less often than sleeping bags do.
    for n in range(3):
        events.append(
            event(
                records.PURCHASE,
                "lantern",
                user_id=f"c{n}",
                session_id=f"camp{n}",
                at=T0 + n * 10 + 5,
                categories=("outdoor",),
            )
        )
    for n in range(10):
        events.append(
            event(
                records.PURCHASE,
                "mug",
                user_id=f"m{n}",
                session_id=f"mug{n}",
                at=T0 + 100 + n,
                categories=("kitchen",),
            )
        )
    return events
