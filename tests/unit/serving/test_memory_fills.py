"""What memory lacks comes with a fill: reading just that piece lets the request run from
memory again, instead of the whole request running on a worker thread."""

from __future__ import annotations

import pytest

from magnetar.db.user_snapshot import UserRows
from magnetar.personalization.settings import SignalSettings
from magnetar.serving.memory import NotInMemory, ServingMemory, memory_only
from magnetar.serving.memory_state import MemoryFirst
from magnetar.serving.personalization import CatalogFact
from magnetar.serving.tenant_clock import TenantClock
from tests.unit.personalization.builders import T0
from tests.unit.serving.fakes import TENANT, FakeServingState


class Rows:
    """A `UserRowsSource` counting reads: Ann bought a tent."""

    def __init__(self) -> None:
        self.reads = 0

    def user_rows(self, tenant_id: str, user_id: str) -> UserRows | None:
        self.reads += 1
        return UserRows.from_rows([("tent", 1.0, T0, 1)], [], (1, 1, T0, T0, []))


def _memory_first() -> tuple[MemoryFirst, FakeServingState, Rows]:
    memory = ServingMemory()
    memory.set_live(True)
    state, rows = FakeServingState(), Rows()
    return MemoryFirst(state, rows, memory, lambda tenant: SignalSettings()), state, rows


def _missing(read: object) -> NotInMemory:
    with memory_only(), pytest.raises(NotInMemory) as raised:
        read()  # type: ignore[operator]
    return raised.value


def test_a_users_missing_rows_are_filled_alone_then_served_from_memory() -> None:
    served, state, rows = _memory_first()
    missing = _missing(lambda: served.purchased_items(TENANT, "ann"))
    assert rows.reads == 0 and missing.fill is not None
    missing.fill()
    assert (rows.reads, state.requests) == (1, [TENANT])  # one read, in a request of its own
    with memory_only():
        assert served.purchased_items(TENANT, "ann") == {"tent"}
    assert rows.reads == 1


def test_missing_catalog_facts_are_filled_alone_absent_ones_too() -> None:
    served, state, _ = _memory_first()
    state.catalog[(TENANT, "tent")] = CatalogFact("Dome Tent", ("outdoor",), True)
    missing = _missing(lambda: served.catalog_facts(TENANT, ["tent", "ghost"]))
    assert missing.fill is not None
    missing.fill()
    with memory_only():
        facts = served.catalog_facts(TENANT, ["tent", "ghost"])
    assert facts == {"tent": CatalogFact("Dome Tent", ("outdoor",), True)}
    assert state.facts_asked == [("tent", "ghost")]


def test_a_tenant_clock_not_read_yet_is_filled_alone() -> None:
    reads: list[str] = []

    def newest(tenant_id: str) -> int:
        reads.append(tenant_id)
        return T0

    clock = TenantClock(newest)
    clock.set_live(True)
    missing = _missing(lambda: clock.now_ms(TENANT, T0 + 1))
    assert missing.fill is not None and reads == []
    missing.fill()
    with memory_only():
        assert clock.now_ms(TENANT, T0 + 1) == T0
    assert reads == [TENANT]


def test_while_memory_is_not_live_nothing_missing_comes_with_a_fill() -> None:
    rows = Rows()
    down = ServingMemory()  # not live: the stream is not connected
    served = MemoryFirst(FakeServingState(), rows, down, lambda tenant: SignalSettings())
    assert _missing(lambda: served.purchased_items(TENANT, "ann")).fill is None
    assert _missing(lambda: served.catalog_facts(TENANT, ["tent"])).fill is None
    assert rows.reads == 0
