from __future__ import annotations

import pytest
from ua_parser import BasicResolver, Parser, load_builtins

from functions.logic.catalog_view import UNKNOWN_ITEM, CatalogItem, CatalogView, ItemSnapshot
from functions.logic.devices import NO_DEVICE, DeviceInfo, DeviceParser, DeviceType
from functions.logic.enrichment import DeadLetter, enrich
from functions.logic.records import EnrichedEvent
from functions.logic.sessions import SessionTracker, session_id_for
from functions.logic.validation import DAY_MS, DlqReason, ValidationPolicy
from tests.unit.functions.logic.factories import FIREFOX_ON_LINUX, MINUTE_MS, NOW_MS, make_event


class FixedDevices:
    """Answers one DeviceInfo for any user agent and remembers what it was asked."""

    def __init__(self, info: DeviceInfo) -> None:
        self.info = info
        self.asked: list[str] = []

    def parse(self, user_agent: str) -> DeviceInfo:
        self.asked.append(user_agent)
        return self.info


LINUX_DESKTOP = DeviceInfo(DeviceType.DESKTOP, False, "Firefox", "121", "Linux", "", "")


@pytest.fixture(scope="module")
def real_devices() -> DeviceParser:
    return DeviceParser(parser=Parser(BasicResolver(load_builtins())))


@pytest.fixture
def catalog() -> CatalogView:
    view = CatalogView()
    view.apply("sku-1", CatalogItem("sku-1", "Blue mug", ("home", "mugs"), 7.5))
    return view


def enriched(outcome: EnrichedEvent | DeadLetter) -> EnrichedEvent:
    assert isinstance(outcome, EnrichedEvent), outcome
    return outcome


def dead(outcome: EnrichedEvent | DeadLetter) -> DeadLetter:
    assert isinstance(outcome, DeadLetter), outcome
    return outcome


def test_valid_event_gets_session_device_and_catalog_fields(
    catalog: CatalogView, real_devices: DeviceParser
) -> None:
    event = make_event(occurred_at_ms=NOW_MS - MINUTE_MS, user_agent=FIREFOX_ON_LINUX)

    record = enriched(enrich(event, NOW_MS, SessionTracker(), catalog, real_devices))

    assert record == EnrichedEvent(
        event=event,
        accepted_at_ms=NOW_MS,
        session_id=session_id_for("acme", "u:user-1", NOW_MS - MINUTE_MS),
        session_assigned=True,
        device=LINUX_DESKTOP,
        item=ItemSnapshot(True, "Blue mug", ("home", "mugs"), 7.5),
        late=False,
    )
    assert record.tenant_id == "acme"
    assert record.subject_id == "user-1"


def test_malformed_event_is_dead_lettered_and_leaves_no_session_state(
    catalog: CatalogView,
) -> None:
    sessions = SessionTracker()
    devices = FixedDevices(LINUX_DESKTOP)

    letter = dead(enrich(make_event(event_id=""), NOW_MS, sessions, catalog, devices))

    assert (letter.reason, letter.field) == (DlqReason.MISSING_FIELD, "event_id")
    assert len(sessions) == 0
    assert devices.asked == []


@pytest.mark.parametrize(
    ("offset_ms", "reason"),
    [(-6 * MINUTE_MS, DlqReason.FUTURE_TIMESTAMP), (8 * DAY_MS, DlqReason.TOO_OLD)],
)
def test_events_outside_the_time_policy_are_dead_lettered(
    catalog: CatalogView, offset_ms: int, reason: DlqReason
) -> None:
    event = make_event(occurred_at_ms=NOW_MS - offset_ms)

    letter = dead(enrich(event, NOW_MS, SessionTracker(), catalog, FixedDevices(NO_DEVICE)))

    assert letter.reason is reason
    assert letter.event is event


def test_dead_letter_properties_carry_reason_field_and_stage(catalog: CatalogView) -> None:
    letter = dead(
        enrich(make_event(quantity=-1), NOW_MS, SessionTracker(), catalog, FixedDevices(NO_DEVICE))
    )

    properties = letter.properties()

    assert properties["dlq_reason"] == "VALUE_OUT_OF_RANGE"
    assert properties["dlq_field"] == "quantity"
    assert properties["dlq_stage"] == "enrich"
    assert properties["dlq_detail"]


def test_late_event_is_enriched_flagged_late_and_sessionized(catalog: CatalogView) -> None:
    sessions = SessionTracker()
    event = make_event(occurred_at_ms=NOW_MS - 2 * 60 * MINUTE_MS)

    record = enriched(enrich(event, NOW_MS, sessions, catalog, FixedDevices(NO_DEVICE)))

    assert record.late
    assert record.session_id == session_id_for("acme", "u:user-1", event.occurred_at_ms)


def test_unknown_item_is_enriched_with_empty_catalog_fields(catalog: CatalogView) -> None:
    event = make_event(item_id="sku-404")

    record = enriched(enrich(event, NOW_MS, SessionTracker(), catalog, FixedDevices(NO_DEVICE)))

    assert record.item == UNKNOWN_ITEM


def test_search_is_not_joined_with_the_catalog(catalog: CatalogView) -> None:
    event = make_event(type="search", item_id="", search_query="mug")

    record = enriched(enrich(event, NOW_MS, SessionTracker(), catalog, FixedDevices(NO_DEVICE)))

    assert record.item == UNKNOWN_ITEM
    assert catalog.stats.joins == 0


def test_clients_session_id_wins_but_the_tracker_still_records_the_event(
    catalog: CatalogView,
) -> None:
    sessions = SessionTracker()
    devices = FixedDevices(NO_DEVICE)
    with_basket = make_event(session_id="order-77", occurred_at_ms=NOW_MS - 10 * MINUTE_MS)
    without = make_event(event_id="evt-0002", occurred_at_ms=NOW_MS - MINUTE_MS)

    first = enriched(enrich(with_basket, NOW_MS, sessions, catalog, devices))
    second = enriched(enrich(without, NOW_MS, sessions, catalog, devices))

    assert (first.session_id, first.session_assigned) == ("order-77", False)
    # The assigned session began with the basket event, which the tracker saw.
    assert second.session_id == session_id_for("acme", "u:user-1", NOW_MS - 10 * MINUTE_MS)
    assert second.session_assigned


def test_anonymous_visitor_gets_sessions_of_their_own(catalog: CatalogView) -> None:
    event = make_event(user_id="", anonymous_id="user-1")

    record = enriched(enrich(event, NOW_MS, SessionTracker(), catalog, FixedDevices(NO_DEVICE)))

    assert record.session_id == session_id_for("acme", "a:user-1", event.occurred_at_ms)
    assert record.subject_id == "user-1"


def test_clients_device_type_hint_wins_over_the_parsed_type(catalog: CatalogView) -> None:
    event = make_event(device_type_hint="tablet")

    record = enriched(enrich(event, NOW_MS, SessionTracker(), catalog, FixedDevices(LINUX_DESKTOP)))

    assert record.device.device_type is DeviceType.TABLET
    assert record.device.browser == "Firefox"


def test_unknown_device_type_hint_falls_back_to_the_parsed_type(catalog: CatalogView) -> None:
    event = make_event(device_type_hint="hologram")

    record = enriched(enrich(event, NOW_MS, SessionTracker(), catalog, FixedDevices(LINUX_DESKTOP)))

    assert record.device.device_type is DeviceType.DESKTOP


def test_missing_user_agent_leaves_device_fields_empty(
    catalog: CatalogView, real_devices: DeviceParser
) -> None:
    record = enriched(
        enrich(make_event(user_agent=""), NOW_MS, SessionTracker(), catalog, real_devices)
    )

    assert record.device == NO_DEVICE


def test_policy_is_applied(catalog: CatalogView) -> None:
    strict = ValidationPolicy(lateness_threshold_ms=0)

    record = enriched(
        enrich(make_event(), NOW_MS, SessionTracker(), catalog, FixedDevices(NO_DEVICE), strict)
    )

    assert record.late


def test_same_message_enriched_twice_gives_the_same_record(catalog: CatalogView) -> None:
    """A redelivery after a crash must not produce a different session or verdict."""
    sessions = SessionTracker()
    devices = FixedDevices(NO_DEVICE)
    event = make_event()

    assert enrich(event, NOW_MS, sessions, catalog, devices) == enrich(
        event, NOW_MS, sessions, catalog, devices
    )
