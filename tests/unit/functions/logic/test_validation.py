from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.logic.validation import (
    DAY_MS,
    DEFAULT_POLICY,
    MINUTE_MS,
    Accepted,
    DlqReason,
    Rejected,
    ValidationPolicy,
    validate,
)
from tests.unit.functions.logic.factories import NOW_MS, make_event


def rejection(**overrides: Any) -> Rejected:
    verdict = validate(make_event(**overrides), NOW_MS)
    assert isinstance(verdict, Rejected), verdict
    return verdict


def test_a_well_formed_recent_event_is_accepted_on_time() -> None:
    assert validate(make_event(), NOW_MS) == Accepted(late=False, lateness_ms=MINUTE_MS)


@pytest.mark.parametrize(
    ("overrides", "reason", "field"),
    [
        ({"event_id": ""}, DlqReason.MISSING_FIELD, "event_id"),
        ({"event_id": "e" * 129}, DlqReason.FIELD_TOO_LONG, "event_id"),
        ({"event_id": "has space"}, DlqReason.INVALID_FIELD, "event_id"),
        ({"event_id": "naïve"}, DlqReason.INVALID_FIELD, "event_id"),
        ({"user_id": "", "anonymous_id": ""}, DlqReason.MISSING_FIELD, "user_id"),
        ({"user_id": "u" * 129}, DlqReason.FIELD_TOO_LONG, "user_id"),
        ({"anonymous_id": "a" * 129}, DlqReason.FIELD_TOO_LONG, "anonymous_id"),
        ({"session_id": "s" * 129}, DlqReason.FIELD_TOO_LONG, "session_id"),
        ({"item_id": "i" * 129}, DlqReason.FIELD_TOO_LONG, "item_id"),
        ({"user_id": "u\x001"}, DlqReason.INVALID_FIELD, "user_id"),
        ({"anonymous_id": "a\n1"}, DlqReason.INVALID_FIELD, "anonymous_id"),
        ({"session_id": "s\x7f"}, DlqReason.INVALID_FIELD, "session_id"),
        ({"item_id": "\x00"}, DlqReason.INVALID_FIELD, "item_id"),
        ({"locale": "en_GB"}, DlqReason.INVALID_FIELD, "context.locale"),
        ({"locale": "x" * 36}, DlqReason.FIELD_TOO_LONG, "context.locale"),
        ({"user_agent": "M" * 513}, DlqReason.FIELD_TOO_LONG, "context.user_agent"),
        ({"type": ""}, DlqReason.MISSING_FIELD, "type"),
        ({"type": "purchase", "item_id": ""}, DlqReason.MISSING_FIELD, "item_id"),
        ({"type": "view", "search_query": "mugs"}, DlqReason.INVALID_FIELD, "search_query"),
        ({"type": "search", "item_id": ""}, DlqReason.MISSING_FIELD, "search_query"),
        ({"type": "search", "search_query": "mugs"}, DlqReason.INVALID_FIELD, "item_id"),
        (
            {"type": "search", "item_id": "", "search_query": "q" * 513},
            DlqReason.FIELD_TOO_LONG,
            "search_query",
        ),
        ({"value": math.nan}, DlqReason.VALUE_OUT_OF_RANGE, "value"),
        ({"value": math.inf}, DlqReason.VALUE_OUT_OF_RANGE, "value"),
        ({"value": -0.01}, DlqReason.VALUE_OUT_OF_RANGE, "value"),
        ({"value": 1e9 + 1}, DlqReason.VALUE_OUT_OF_RANGE, "value"),
        ({"type": "rate", "value": 5.5}, DlqReason.VALUE_OUT_OF_RANGE, "value"),
        ({"quantity": -1}, DlqReason.VALUE_OUT_OF_RANGE, "quantity"),
        ({"quantity": 10_001}, DlqReason.VALUE_OUT_OF_RANGE, "quantity"),
        (
            {"attributes": {f"k{n}": "v" for n in range(33)}},
            DlqReason.TOO_MANY_ATTRIBUTES,
            "attributes",
        ),
        ({"attributes": {"Page_URL": "/"}}, DlqReason.INVALID_FIELD, "attributes"),
        ({"attributes": {"": "/"}}, DlqReason.INVALID_FIELD, "attributes"),
        ({"attributes": {"k" * 65: "/"}}, DlqReason.FIELD_TOO_LONG, f"attributes.{'k' * 65}"),
        (
            {"attributes": {"referrer": "r" * 1025}},
            DlqReason.FIELD_TOO_LONG,
            "attributes[referrer]",
        ),
        ({"occurred_at_ms": 0}, DlqReason.MISSING_FIELD, "occurred_at"),
    ],
)
def test_malformed_event_is_rejected_with_its_reason_and_field(
    overrides: dict[str, Any], reason: DlqReason, field: str
) -> None:
    rejected = rejection(**overrides)

    assert (rejected.reason, rejected.field) == (reason, field)
    assert rejected.detail


def test_limits_count_utf8_bytes_not_characters() -> None:
    # 43 three-byte characters: 129 bytes, though only 43 characters.
    assert rejection(user_id="€" * 43).reason is DlqReason.FIELD_TOO_LONG
    assert isinstance(validate(make_event(user_id="€" * 42), NOW_MS), Accepted)


def test_values_at_the_limits_are_accepted() -> None:
    for overrides in (
        {"value": 1e9, "quantity": 10_000},
        {"type": "rate", "value": 5.0},
        {"event_id": "e" * 128, "user_id": "u" * 128, "locale": "x" * 35},
        {"attributes": {f"k{n}": "v" * 1024 for n in range(32)}},
        {"user_agent": "M" * 512},
    ):
        assert isinstance(validate(make_event(**overrides), NOW_MS), Accepted), overrides


def test_a_search_needs_a_query_and_no_item() -> None:
    event = make_event(type="search", item_id="", search_query="blue mug")

    assert isinstance(validate(event, NOW_MS), Accepted)


def test_anonymous_visitor_without_user_id_is_accepted() -> None:
    assert isinstance(validate(make_event(user_id="", anonymous_id="cookie-9"), NOW_MS), Accepted)


def test_unknown_type_flows_by_default_for_forward_compatibility() -> None:
    assert isinstance(validate(make_event(type="gift_wrap", item_id=""), NOW_MS), Accepted)


def test_unknown_type_is_rejected_when_the_policy_says_so() -> None:
    policy = ValidationPolicy(accept_unknown_types=False)

    verdict = validate(make_event(type="gift_wrap"), NOW_MS, policy)

    assert isinstance(verdict, Rejected)
    assert verdict.reason is DlqReason.UNKNOWN_TYPE


def test_first_failing_check_is_the_one_reported() -> None:
    rejected = rejection(event_id="", type="", occurred_at_ms=0)

    assert rejected.field == "event_id"


def test_event_more_than_five_minutes_in_the_future_is_future_timestamp() -> None:
    rejected = rejection(occurred_at_ms=NOW_MS + 5 * MINUTE_MS + 1)

    assert rejected.reason is DlqReason.FUTURE_TIMESTAMP


def test_small_clock_skew_into_the_future_is_accepted_on_time() -> None:
    verdict = validate(make_event(occurred_at_ms=NOW_MS + 5 * MINUTE_MS), NOW_MS)

    assert verdict == Accepted(late=False, lateness_ms=0)


def test_event_older_than_seven_days_is_too_old() -> None:
    rejected = rejection(occurred_at_ms=NOW_MS - 7 * DAY_MS - 1)

    assert rejected.reason is DlqReason.TOO_OLD


def test_event_exactly_at_the_horizon_is_accepted_as_late() -> None:
    verdict = validate(make_event(occurred_at_ms=NOW_MS - 7 * DAY_MS), NOW_MS)

    assert verdict == Accepted(late=True, lateness_ms=7 * DAY_MS)


def test_event_past_the_lateness_threshold_is_accepted_and_flagged_late() -> None:
    verdict = validate(make_event(occurred_at_ms=NOW_MS - 15 * MINUTE_MS - 1), NOW_MS)

    assert verdict == Accepted(late=True, lateness_ms=15 * MINUTE_MS + 1)


def test_event_exactly_at_the_lateness_threshold_is_on_time() -> None:
    verdict = validate(make_event(occurred_at_ms=NOW_MS - 15 * MINUTE_MS), NOW_MS)

    assert verdict == Accepted(late=False, lateness_ms=15 * MINUTE_MS)


@pytest.mark.parametrize(
    "policy",
    [
        {"max_future_skew_ms": -1},
        {"lateness_threshold_ms": -1},
        {"lateness_threshold_ms": 2 * DAY_MS, "retention_horizon_ms": DAY_MS},
    ],
)
def test_policy_refuses_inconsistent_thresholds(policy: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ValidationPolicy(**policy)  # type: ignore[arg-type]


@given(st.integers(min_value=-DAY_MS * 30, max_value=DAY_MS * 30))
def test_time_policy_partitions_every_offset_as_documented(offset_ms: int) -> None:
    """offset = acceptance - occurrence: future / on time / late / too old, nothing else."""
    verdict = validate(make_event(occurred_at_ms=NOW_MS - offset_ms), NOW_MS)
    policy = DEFAULT_POLICY

    if offset_ms < -policy.max_future_skew_ms:
        assert isinstance(verdict, Rejected)
        assert verdict.reason is DlqReason.FUTURE_TIMESTAMP
    elif offset_ms > policy.retention_horizon_ms:
        assert isinstance(verdict, Rejected)
        assert verdict.reason is DlqReason.TOO_OLD
    else:
        assert isinstance(verdict, Accepted)
        assert verdict.late == (offset_ms > policy.lateness_threshold_ms)
        assert verdict.lateness_ms == max(offset_ms, 0)
