"""The ingest limits of events.proto, rule by rule, on generated messages."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import event_validation as v
from gateway.event_validation import Rejection, field_paths, split_batch, validate_event
from magnetar.v1 import event_service_pb2, events_pb2

NOW = 1_800_000_000.0


def event(**fields: Any) -> events_pb2.Event:
    context = fields.pop("context", {})
    base: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u-1",
        "type": events_pb2.EVENT_TYPE_VIEW,
        "item_id": "sku-1",
    }
    base.update(fields)
    occurred = base.pop("occurred_at", NOW)
    message = events_pb2.Event(**base, context=events_pb2.EventContext(**context))
    if occurred is not None:
        message.occurred_at.FromSeconds(int(occurred))
    return message


def reasons(message: events_pb2.Event) -> list[tuple[str, Rejection]]:
    return [(x.field, x.reason) for x in validate_event(message, NOW)]


def test_a_complete_event_is_valid() -> None:
    assert reasons(event(attributes={"page_url": "https://x"}, context={"locale": "en-GB"})) == []


def test_rejection_names_match_the_contract() -> None:
    contract = {
        n.removeprefix("REJECTION_REASON_")
        for n in event_service_pb2.RejectionReason.DESCRIPTOR.values_by_name
    }
    assert {r.value for r in Rejection} == contract - {"UNSPECIFIED"}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"event_id": ""}, ("event_id", Rejection.MISSING_FIELD)),
        ({"event_id": "has space"}, ("event_id", Rejection.INVALID_FIELD)),
        ({"event_id": "é"}, ("event_id", Rejection.INVALID_FIELD)),
        ({"event_id": "x" * 129}, ("event_id", Rejection.FIELD_TOO_LONG)),
        ({"user_id": ""}, ("user_id", Rejection.MISSING_FIELD)),
        ({"user_id": "u" * 129}, ("user_id", Rejection.FIELD_TOO_LONG)),
        ({"user_id": "é" * 65}, ("user_id", Rejection.FIELD_TOO_LONG)),  # 130 bytes
        ({"user_id": "a\nb"}, ("user_id", Rejection.INVALID_FIELD)),
        ({"session_id": "s\x00"}, ("session_id", Rejection.INVALID_FIELD)),
        ({"type": 0}, ("type", Rejection.MISSING_FIELD)),
        ({"type": 42}, ("type", Rejection.INVALID_FIELD)),
        ({"item_id": ""}, ("item_id", Rejection.MISSING_FIELD)),
        ({"search_query": "shoes"}, ("search_query", Rejection.INVALID_FIELD)),
        ({"occurred_at": None}, ("occurred_at", Rejection.MISSING_FIELD)),
        ({"occurred_at": NOW + 301}, ("occurred_at", Rejection.OCCURRED_IN_FUTURE)),
        ({"occurred_at": NOW - 7 * 86400 - 1}, ("occurred_at", Rejection.OCCURRED_TOO_LONG_AGO)),
        ({"value": -1.0}, ("value", Rejection.VALUE_OUT_OF_RANGE)),
        ({"value": math.nan}, ("value", Rejection.VALUE_OUT_OF_RANGE)),
        ({"value": math.inf}, ("value", Rejection.VALUE_OUT_OF_RANGE)),
        (
            {"type": events_pb2.EVENT_TYPE_RATE, "value": 5.5},
            ("value", Rejection.VALUE_OUT_OF_RANGE),
        ),
        ({"quantity": 10_001}, ("quantity", Rejection.VALUE_OUT_OF_RANGE)),
        ({"attributes": {"Page": "x"}}, ("attributes[Page]", Rejection.INVALID_FIELD)),
        ({"attributes": {"k": "v" * 1025}}, ("attributes[k]", Rejection.FIELD_TOO_LONG)),
        (
            {"attributes": {f"k{i}": "v" for i in range(33)}},
            ("attributes", Rejection.TOO_MANY_ATTRIBUTES),
        ),
        ({"context": {"user_agent": "u" * 513}}, ("context.user_agent", Rejection.FIELD_TOO_LONG)),
        ({"context": {"locale": "en_GB"}}, ("context.locale", Rejection.INVALID_FIELD)),
        ({"context": {"device_type": 99}}, ("context.device_type", Rejection.INVALID_FIELD)),
        (
            {"context": {"screen_width": 100_001}},
            ("context.screen_width", Rejection.VALUE_OUT_OF_RANGE),
        ),
    ],
)
def test_each_limit_is_enforced_with_its_field_and_reason(
    fields: dict[str, Any], expected: tuple[str, Rejection]
) -> None:
    assert expected in reasons(event(**fields))


def test_anonymous_id_alone_identifies_the_user() -> None:
    assert reasons(event(user_id="", anonymous_id="a-1")) == []


def test_search_needs_a_query_and_no_item() -> None:
    search = events_pb2.EVENT_TYPE_SEARCH
    assert reasons(event(type=search, item_id="", search_query="red shoes")) == []
    assert ("search_query", Rejection.MISSING_FIELD) in reasons(event(type=search, item_id=""))
    assert ("item_id", Rejection.INVALID_FIELD) in reasons(event(type=search, search_query="q"))


def test_limits_at_their_edge_are_accepted() -> None:
    edge = event(
        event_id="x" * 128,
        occurred_at=NOW + 300,
        value=1e9,
        quantity=10_000,
        attributes={f"k{i}": "v" * 100 for i in range(32)},
    )
    assert reasons(edge) == []
    assert reasons(event(type=events_pb2.EVENT_TYPE_RATE, value=5.0)) == []
    assert reasons(event(occurred_at=NOW - 7 * 86400)) == []


def test_an_event_over_16_kib_is_too_large() -> None:
    big = event(attributes={f"k{i}": "v" * 1000 for i in range(20)})
    assert reasons(big) == [("", Rejection.EVENT_TOO_LARGE)]


def test_every_problem_of_an_event_is_reported() -> None:
    found = reasons(event(event_id="", user_id="", item_id="", occurred_at=None))
    assert [f for f, _ in found] == ["event_id", "user_id", "item_id", "occurred_at"]


def test_batch_split_keeps_order_and_refuses_repeated_ids() -> None:
    batch = [
        event(event_id="a"),
        event(event_id="b", item_id=""),
        event(event_id="a"),
        event(event_id="c"),
    ]
    split = split_batch(batch, NOW)
    assert [e.event_id for e in split.accepted] == ["a", "c"]
    assert [(r.index, r.reason) for r in split.rejected] == [
        (1, Rejection.MISSING_FIELD),
        (2, Rejection.DUPLICATE_EVENT_ID),
    ]


def test_field_paths_point_into_the_request() -> None:
    split = split_batch([event(), event(item_id="", quantity=20_000)], NOW)
    assert [path for path, _ in field_paths(split.rejected)] == [
        "events[1].item_id",
        "events[1].quantity",
    ]


def test_partition_key_prefers_the_user_id() -> None:
    assert v.partition_key(event(user_id="u", anonymous_id="a")) == "u"
    assert v.partition_key(event(user_id="", anonymous_id="a")) == "a"


text = st.text(max_size=200)
events = st.builds(
    events_pb2.Event,
    event_id=text,
    user_id=text,
    anonymous_id=text,
    session_id=text,
    type=st.integers(min_value=0, max_value=20),
    item_id=text,
    value=st.floats(allow_nan=True, allow_infinity=True),
    quantity=st.integers(min_value=0, max_value=2**32 - 1),
    attributes=st.dictionaries(text, text, max_size=40),
    search_query=text,
    context=st.builds(
        events_pb2.EventContext,
        user_agent=text,
        locale=text,
        device_type=st.integers(min_value=0, max_value=10),
        screen_width=st.integers(min_value=0, max_value=2**32 - 1),
    ),
)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(min_value=0, max_value=2 * 10**9))
def test_any_event_gets_an_answer_and_accepted_ones_honour_the_limits(
    message: events_pb2.Event, occurred: int
) -> None:
    message.occurred_at.FromSeconds(occurred)
    found = validate_event(message, NOW)
    assert all(isinstance(v.reason, Rejection) for v in found)
    if not found:  # spot-check the documented limits on what is accepted
        assert 0 < len(message.event_id) <= 128 and " " not in message.event_id
        assert message.user_id or message.anonymous_id
        assert len(message.attributes) <= 32
        assert 0 <= message.value <= 1e9
        assert NOW - 7 * 86400 <= message.occurred_at.seconds <= NOW + 300
        assert message.ByteSize() <= 16 * 1024


def test_an_echoed_attribute_key_is_cut_to_64_characters() -> None:
    """20 violations of 16 KiB keys would overflow the status trailers the answer rides in."""
    long_key = "K" * 10_000
    (field, reason), *_ = reasons(event(attributes={long_key: "v"}))
    assert reason == Rejection.INVALID_FIELD
    assert field == "attributes[" + "K" * 63 + "…]"
