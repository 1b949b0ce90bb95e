"""The pipeline's verdict on one event: accept, accept as late, or dead-letter with a reason.

`enrich` calls `validate` first; a rejected event goes to ``persistent://<tenant>/events/dlq``
with its `DlqReason`, the field at fault and a readable detail. The limits are the
contract's (`magnetar.event_contract`), the ones the gateway enforces; the topic is checked
again because it is the real boundary (old producers, tools, replays). Time is judged against
``accepted_at_ms`` (the raw message's publish time), so a message gets the same verdict
however late or often it is processed. Imported history (`IMPORT_POLICY`) may be of any age.
The order of the checks and the reasons for each threshold: docs/pipeline.md, "Validation,
lateness and the DLQ".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from functions.logic.records import Event
from magnetar import event_contract as contract
from magnetar.event_contract import EventType

MINUTE_MS = 60 * 1000
DAY_MS = 24 * 60 * MINUTE_MS

SEARCH = EventType.SEARCH.label
RATE = EventType.RATE.label
# The wire's types as the stream records name them (`EventType.label`).
WIRE_EVENT_TYPES = frozenset(kind.label for kind in EventType)


class DlqReason(StrEnum):
    """Why an event went to the dead-letter topic; stable strings, put in a message property."""

    # The payload did not decode as an Event (the Function's decision, before any logic).
    UNDECODABLE = "UNDECODABLE"
    MISSING_FIELD = "MISSING_FIELD"
    # Present but malformed: a character outside the allowed set, a search with an item.
    INVALID_FIELD = "INVALID_FIELD"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    TOO_MANY_ATTRIBUTES = "TOO_MANY_ATTRIBUTES"
    # Only with ``accept_unknown_types=False``.
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    TOO_OLD = "TOO_OLD"


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Limits and time thresholds; the defaults are the contract's, lengths UTF-8 bytes.

    ``accept_unknown_types``: a type this build does not know flows on (the contract asks
    it: a gateway upgraded before the pipeline must not send a new type to the DLQ).
    ``lateness_threshold_ms``: older than this before acceptance, still inside the horizon,
    is accepted with ``late=True``.
    """

    max_future_skew_ms: int = contract.MAX_FUTURE_S * 1000
    lateness_threshold_ms: int = 15 * MINUTE_MS
    retention_horizon_ms: int = contract.MAX_AGE_S * 1000
    known_types: frozenset[str] = WIRE_EVENT_TYPES
    accept_unknown_types: bool = True
    max_event_id_bytes: int = contract.MAX_ID_BYTES
    max_id_bytes: int = contract.MAX_ID_BYTES
    max_locale_bytes: int = contract.MAX_LOCALE_BYTES
    max_user_agent_bytes: int = contract.MAX_USER_AGENT_BYTES
    max_search_query_bytes: int = contract.MAX_SEARCH_QUERY_BYTES
    max_attributes: int = contract.MAX_ATTRIBUTES
    max_attribute_key_bytes: int = contract.MAX_ATTRIBUTE_KEY_BYTES
    max_attribute_value_bytes: int = contract.MAX_ATTRIBUTE_VALUE_BYTES
    max_value: float = contract.MAX_VALUE
    max_rating: float = contract.MAX_RATING
    max_quantity: int = contract.MAX_QUANTITY
    # Imported history: no TOO_OLD and no late flag, whatever the event's age.
    any_age: bool = False

    def __post_init__(self) -> None:
        if self.max_future_skew_ms < 0:
            raise ValueError("max_future_skew_ms must not be negative")
        if not 0 <= self.lateness_threshold_ms <= self.retention_horizon_ms:
            raise ValueError("need 0 <= lateness_threshold_ms <= retention_horizon_ms")


DEFAULT_POLICY = ValidationPolicy()
IMPORT_POLICY = ValidationPolicy(any_age=True)
# The last path segment of a tenant's import topic (a partition adds "-partition-<n>").
IMPORT_TOPIC_NAME = "import"


def is_import_topic(topic: str) -> bool:
    """Whether a message from `topic` (a partition's name or the topic's) is imported history."""
    name = topic.rsplit("/", 1)[-1]
    base, _, partition = name.rpartition("-partition-")
    if base and partition.isdigit():
        name = base
    return name == IMPORT_TOPIC_NAME


def policy_for_topic(topic: str, live: ValidationPolicy = DEFAULT_POLICY) -> ValidationPolicy:
    """`IMPORT_POLICY` for messages of the import topic, `live` for everything else."""
    return IMPORT_POLICY if is_import_topic(topic) else live


@dataclass(frozen=True, slots=True)
class Accepted:
    """The event flows on; ``late`` when it reached the gateway after the threshold."""

    late: bool
    # How long before acceptance it occurred; 0 for a timestamp slightly in the future.
    lateness_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The event goes to the DLQ: the reason, the field at fault, and what was wrong."""

    reason: DlqReason
    field: str
    detail: str


Verdict = Accepted | Rejected


def validate(
    event: Event, accepted_at_ms: int, policy: ValidationPolicy = DEFAULT_POLICY
) -> Verdict:
    """Check one event, accepted by the gateway at ``accepted_at_ms``, against the policy."""
    for check in _CHECKS:
        rejected = check(event, policy)
        if rejected is not None:
            return rejected
    return _judge_time(event, accepted_at_ms, policy)


def _too_long(field: str, text: str, limit: int) -> Rejected | None:
    size = contract.utf8_len(text)
    if size > limit:
        return Rejected(DlqReason.FIELD_TOO_LONG, field, f"{size} bytes, limit {limit}")
    return None


def _check_identity(event: Event, policy: ValidationPolicy) -> Rejected | None:
    if not event.event_id:
        return Rejected(DlqReason.MISSING_FIELD, "event_id", "required")
    too_long = _too_long("event_id", event.event_id, policy.max_event_id_bytes)
    if too_long:
        return too_long
    if not contract.EVENT_ID.fullmatch(event.event_id):
        return Rejected(DlqReason.INVALID_FIELD, "event_id", "printable ASCII without spaces only")
    if not event.user_id and not event.anonymous_id:
        return Rejected(DlqReason.MISSING_FIELD, "user_id", "user_id or anonymous_id required")
    for field, text, limit in (
        ("user_id", event.user_id, policy.max_id_bytes),
        ("anonymous_id", event.anonymous_id, policy.max_id_bytes),
        ("session_id", event.session_id, policy.max_id_bytes),
        ("item_id", event.item_id, policy.max_id_bytes),
        ("context.locale", event.locale, policy.max_locale_bytes),
        ("context.user_agent", event.user_agent, policy.max_user_agent_bytes),
    ):
        too_long = _too_long(field, text, limit)
        if too_long:
            return too_long
    for field, text in (
        ("user_id", event.user_id),
        ("anonymous_id", event.anonymous_id),
        ("session_id", event.session_id),
        ("item_id", event.item_id),
    ):
        if contract.CONTROL.search(text):
            return Rejected(DlqReason.INVALID_FIELD, field, "control characters are not allowed")
    if event.locale and not contract.LOCALE.fullmatch(event.locale):
        return Rejected(DlqReason.INVALID_FIELD, "context.locale", "letters, digits, '-' only")
    return None


def _check_type(event: Event, policy: ValidationPolicy) -> Rejected | None:
    if not event.type:
        return Rejected(DlqReason.MISSING_FIELD, "type", "required")
    if event.type not in policy.known_types:
        if policy.accept_unknown_types:
            return None
        return Rejected(DlqReason.UNKNOWN_TYPE, "type", f"{event.type!r} is not known")
    if event.type == SEARCH:
        if not event.search_query:
            return Rejected(DlqReason.MISSING_FIELD, "search_query", "required for search")
        if event.item_id:
            return Rejected(DlqReason.INVALID_FIELD, "item_id", "must be empty for search")
        return _too_long("search_query", event.search_query, policy.max_search_query_bytes)
    if not event.item_id:
        return Rejected(DlqReason.MISSING_FIELD, "item_id", f"required for {event.type}")
    if event.search_query:
        return Rejected(DlqReason.INVALID_FIELD, "search_query", "only for search")
    return None


def _check_numbers(event: Event, policy: ValidationPolicy) -> Rejected | None:
    top = policy.max_rating if event.type == RATE else policy.max_value
    if not math.isfinite(event.value) or not 0 <= event.value <= top:
        return Rejected(DlqReason.VALUE_OUT_OF_RANGE, "value", f"must be from 0 to {top:g}")
    if not 0 <= event.quantity <= policy.max_quantity:
        return Rejected(
            DlqReason.VALUE_OUT_OF_RANGE, "quantity", f"must be from 0 to {policy.max_quantity}"
        )
    return None


def _check_attributes(event: Event, policy: ValidationPolicy) -> Rejected | None:
    attributes = event.attributes
    if len(attributes) > policy.max_attributes:
        return Rejected(
            DlqReason.TOO_MANY_ATTRIBUTES,
            "attributes",
            f"{len(attributes)} entries, limit {policy.max_attributes}",
        )
    for key, text in attributes.items():
        if not contract.ATTRIBUTE_KEY.fullmatch(key):
            return Rejected(
                DlqReason.INVALID_FIELD,
                "attributes",
                f"key {key!r}: {contract.ATTRIBUTE_KEY_CHARS}",
            )
        too_long = _too_long(f"attributes.{key}", key, policy.max_attribute_key_bytes) or (
            _too_long(f"attributes[{key}]", text, policy.max_attribute_value_bytes)
        )
        if too_long:
            return too_long
    return None


_CHECKS: tuple[Callable[[Event, ValidationPolicy], Rejected | None], ...] = (
    _check_identity,
    _check_type,
    _check_numbers,
    _check_attributes,
)


def _judge_time(event: Event, accepted_at_ms: int, policy: ValidationPolicy) -> Verdict:
    if event.occurred_at_ms <= 0:
        return Rejected(DlqReason.MISSING_FIELD, "occurred_at", "required")
    age_ms = accepted_at_ms - event.occurred_at_ms
    if -age_ms > policy.max_future_skew_ms:
        return Rejected(
            DlqReason.FUTURE_TIMESTAMP,
            "occurred_at",
            f"{-age_ms} ms after acceptance, limit {policy.max_future_skew_ms} ms",
        )
    if policy.any_age:
        return Accepted(late=False, lateness_ms=max(age_ms, 0))
    if age_ms > policy.retention_horizon_ms:
        return Rejected(
            DlqReason.TOO_OLD,
            "occurred_at",
            f"{age_ms} ms before acceptance, horizon {policy.retention_horizon_ms} ms",
        )
    return Accepted(late=age_ms > policy.lateness_threshold_ms, lateness_ms=max(age_ms, 0))
