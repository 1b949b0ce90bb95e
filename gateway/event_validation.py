"""Which events the gateway accepts: the limits of `magnetar.event_contract`, as pure logic.

Works on anything shaped like a `magnetar.v1.Event` (see `EventLike`), so it imports
neither gRPC nor the generated code; the unit tests feed it generated messages and plain
objects alike. The checks run once per event on the ingest path, so they are written to be
cheap in the common case: ASCII strings are measured without encoding them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from magnetar import event_contract as contract
from magnetar.errors import echo
from magnetar.event_contract import (
    ATTRIBUTE_KEY,
    ATTRIBUTE_KEY_CHARS,
    CONTROL,
    EVENT_ID,
    LOCALE,
    EventType,
    utf8_len,
)


class Rejection(StrEnum):
    """Why an event was refused; the names of magnetar.v1.RejectionReason without prefix."""

    MISSING_FIELD = "MISSING_FIELD"
    INVALID_FIELD = "INVALID_FIELD"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    TOO_MANY_ATTRIBUTES = "TOO_MANY_ATTRIBUTES"
    EVENT_TOO_LARGE = "EVENT_TOO_LARGE"
    OCCURRED_IN_FUTURE = "OCCURRED_IN_FUTURE"
    OCCURRED_TOO_LONG_AGO = "OCCURRED_TOO_LONG_AGO"
    DUPLICATE_EVENT_ID = "DUPLICATE_EVENT_ID"


class TimestampLike(Protocol):
    @property
    def seconds(self) -> int: ...
    @property
    def nanos(self) -> int: ...


class EventContextLike(Protocol):
    @property
    def user_agent(self) -> str: ...
    @property
    def locale(self) -> str: ...
    @property
    def device_type(self) -> int: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def app_version(self) -> str: ...
    @property
    def screen_width(self) -> int: ...
    @property
    def screen_height(self) -> int: ...


class EventLike(Protocol):
    """The fields of magnetar.v1.Event that validation reads."""

    @property
    def event_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def anonymous_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def type(self) -> int: ...
    @property
    def item_id(self) -> str: ...
    @property
    def occurred_at(self) -> TimestampLike: ...
    @property
    def value(self) -> float: ...
    @property
    def quantity(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def context(self) -> EventContextLike: ...
    @property
    def search_query(self) -> str: ...
    def ByteSize(self) -> int: ...
    def SerializeToString(self) -> bytes: ...


@dataclass(frozen=True)
class EventLimits:
    """The contract's limits (`magnetar.event_contract`); tests and imports vary them."""

    max_id_bytes: int = contract.MAX_ID_BYTES
    max_search_query_bytes: int = contract.MAX_SEARCH_QUERY_BYTES
    max_attributes: int = contract.MAX_ATTRIBUTES
    max_attribute_key_bytes: int = contract.MAX_ATTRIBUTE_KEY_BYTES
    max_attribute_value_bytes: int = contract.MAX_ATTRIBUTE_VALUE_BYTES
    max_user_agent_bytes: int = contract.MAX_USER_AGENT_BYTES
    max_locale_bytes: int = contract.MAX_LOCALE_BYTES
    max_time_zone_bytes: int = contract.MAX_TIME_ZONE_BYTES
    max_app_version_bytes: int = contract.MAX_APP_VERSION_BYTES
    max_screen_pixels: int = contract.MAX_SCREEN_PIXELS
    max_event_bytes: int = contract.MAX_EVENT_BYTES
    max_value: float = contract.MAX_VALUE
    max_rating: float = contract.MAX_RATING
    max_quantity: int = contract.MAX_QUANTITY
    max_future_s: int = contract.MAX_FUTURE_S
    # None: any age (imported history, EventService.ImportEvents).
    max_age_s: int | None = contract.MAX_AGE_S
    max_batch_events: int = contract.MAX_BATCH_EVENTS


DEFAULT_LIMITS = EventLimits()
IMPORT_LIMITS = EventLimits(max_age_s=None)


@dataclass(frozen=True)
class Violation:
    """One problem: which field (a path inside the event), why, and a sentence for people."""

    field: str
    reason: Rejection
    description: str


@dataclass(frozen=True)
class RejectedEvent:
    """An event of a batch that will not be published, with every problem found."""

    index: int
    violations: tuple[Violation, ...]

    @property
    def reason(self) -> Rejection:
        return self.violations[0].reason


# Plain ints: compared once or twice per event on the ingest path.
_KNOWN_EVENT_TYPES = frozenset(int(kind) for kind in EventType)
_SEARCH, _RATE = int(EventType.SEARCH), int(EventType.RATE)


class _Checker:
    """Collects the violations of one event."""

    __slots__ = ("found", "limits")

    def __init__(self, limits: EventLimits) -> None:
        self.limits = limits
        self.found: list[Violation] = []

    def add(self, field: str, reason: Rejection, description: str) -> None:
        self.found.append(Violation(field, reason, description))

    def text(self, field: str, value: str, max_bytes: int, *, required: bool = False) -> None:
        if not value:
            if required:
                self.add(field, Rejection.MISSING_FIELD, f"{field} is required")
            return
        if len(value) <= max_bytes and value.isascii() and value.isprintable():
            return  # the common case, decided in C: short printable ASCII
        if utf8_len(value) > max_bytes:
            self.add(field, Rejection.FIELD_TOO_LONG, f"{field} is longer than {max_bytes} bytes")
        elif CONTROL.search(value):
            self.add(field, Rejection.INVALID_FIELD, f"{field} contains control characters")


def validate_event(
    event: EventLike, now_s: float, limits: EventLimits = DEFAULT_LIMITS
) -> list[Violation]:
    """Every violation of `event` against `limits` at time `now_s` (empty when valid)."""
    check = _Checker(limits)

    event_id = event.event_id
    if not event_id:
        check.add("event_id", Rejection.MISSING_FIELD, "event_id is required")
    elif len(event_id) > limits.max_id_bytes or not event_id.isascii():
        check.add(
            "event_id",
            Rejection.FIELD_TOO_LONG if event_id.isascii() else Rejection.INVALID_FIELD,
            f"event_id must be 1 to {limits.max_id_bytes} bytes of printable ASCII",
        )
    elif not EVENT_ID.fullmatch(event_id):
        check.add(
            "event_id", Rejection.INVALID_FIELD, "event_id must be printable ASCII without spaces"
        )

    if not event.user_id and not event.anonymous_id:
        check.add("user_id", Rejection.MISSING_FIELD, "user_id or anonymous_id is required")
    check.text("user_id", event.user_id, limits.max_id_bytes)
    check.text("anonymous_id", event.anonymous_id, limits.max_id_bytes)
    check.text("session_id", event.session_id, limits.max_id_bytes)

    kind = event.type
    if kind == 0:
        check.add("type", Rejection.MISSING_FIELD, "type is required")
    elif kind not in _KNOWN_EVENT_TYPES:
        check.add("type", Rejection.INVALID_FIELD, f"unknown event type {kind}")
    if kind == _SEARCH:
        if event.item_id:
            check.add("item_id", Rejection.INVALID_FIELD, "a SEARCH event has no item_id")
        check.text("search_query", event.search_query, limits.max_search_query_bytes, required=True)
    elif kind:
        check.text("item_id", event.item_id, limits.max_id_bytes, required=True)
        if event.search_query:
            check.add(
                "search_query", Rejection.INVALID_FIELD, "only SEARCH events have a search_query"
            )

    _check_occurred_at(check, event.occurred_at, now_s)
    _check_numbers(check, kind, event.value, event.quantity)
    _check_attributes(check, event.attributes)
    _check_context(check, event.context)

    if not check.found and event.ByteSize() > limits.max_event_bytes:
        check.add(
            "",
            Rejection.EVENT_TOO_LARGE,
            f"the event is larger than {limits.max_event_bytes} bytes",
        )
    return check.found


def _check_occurred_at(check: _Checker, occurred_at: TimestampLike, now_s: float) -> None:
    seconds, nanos = occurred_at.seconds, occurred_at.nanos
    if seconds == 0 and nanos == 0:
        check.add("occurred_at", Rejection.MISSING_FIELD, "occurred_at is required")
    elif not 0 <= nanos < 1_000_000_000:
        check.add("occurred_at", Rejection.INVALID_FIELD, "occurred_at.nanos must be in [0, 1e9)")
    elif seconds > now_s + check.limits.max_future_s:
        check.add(
            "occurred_at",
            Rejection.OCCURRED_IN_FUTURE,
            f"occurred_at is more than {check.limits.max_future_s} s in the future",
        )
    elif (max_age_s := check.limits.max_age_s) is not None and seconds < now_s - max_age_s:
        check.add(
            "occurred_at",
            Rejection.OCCURRED_TOO_LONG_AGO,
            f"occurred_at is more than {max_age_s // 86400} days in the past",
        )


def _check_numbers(check: _Checker, kind: int, value: float, quantity: int) -> None:
    limits = check.limits
    if not math.isfinite(value) or not 0 <= value <= limits.max_value:
        check.add(
            "value",
            Rejection.VALUE_OUT_OF_RANGE,
            f"value must be finite, 0 to {limits.max_value:g}",
        )
    elif kind == _RATE and value > limits.max_rating:
        check.add("value", Rejection.VALUE_OUT_OF_RANGE, f"a rating is 0 to {limits.max_rating:g}")
    if quantity > limits.max_quantity:
        check.add(
            "quantity", Rejection.VALUE_OUT_OF_RANGE, f"quantity is at most {limits.max_quantity}"
        )


def _check_attributes(check: _Checker, attributes: Mapping[str, str]) -> None:
    if not attributes:
        return
    limits = check.limits
    if len(attributes) > limits.max_attributes:
        check.add(
            "attributes",
            Rejection.TOO_MANY_ATTRIBUTES,
            f"at most {limits.max_attributes} attributes",
        )
        return
    for key, value in attributes.items():
        field = f"attributes[{echo(key)}]"
        if len(key) > limits.max_attribute_key_bytes or not ATTRIBUTE_KEY.fullmatch(key):
            check.add(
                field,
                Rejection.INVALID_FIELD,
                f"attribute keys are 1 to {limits.max_attribute_key_bytes} bytes of {ATTRIBUTE_KEY_CHARS}",
            )
        elif utf8_len(value) > limits.max_attribute_value_bytes:
            check.add(
                field,
                Rejection.FIELD_TOO_LONG,
                f"attribute values are at most {limits.max_attribute_value_bytes} bytes",
            )


def _check_context(check: _Checker, context: EventContextLike) -> None:
    limits = check.limits
    check.text("context.user_agent", context.user_agent, limits.max_user_agent_bytes)
    locale = context.locale
    if locale and (len(locale) > limits.max_locale_bytes or not LOCALE.fullmatch(locale)):
        check.add(
            "context.locale",
            Rejection.INVALID_FIELD,
            f"locale is a BCP 47 tag of at most {limits.max_locale_bytes} bytes",
        )
    check.text("context.time_zone", context.time_zone, limits.max_time_zone_bytes)
    check.text("context.app_version", context.app_version, limits.max_app_version_bytes)
    if context.device_type not in contract.KNOWN_DEVICE_TYPES:
        check.add("context.device_type", Rejection.INVALID_FIELD, "unknown device type")
    for name, pixels in (
        ("screen_width", context.screen_width),
        ("screen_height", context.screen_height),
    ):
        if pixels > limits.max_screen_pixels:
            check.add(
                f"context.{name}",
                Rejection.VALUE_OUT_OF_RANGE,
                f"{name} is at most {limits.max_screen_pixels}",
            )


def partition_key(event: EventLike) -> str:
    """Events of one person stay on one partition, in order: user id, else anonymous id."""
    return event.user_id or event.anonymous_id


E = TypeVar("E", bound=EventLike)


@dataclass(frozen=True)
class ValidatedBatch(Generic[E]):
    """A batch split into what may be published and what is refused."""

    accepted: list[E]
    rejected: list[RejectedEvent]


def split_batch(
    events: Sequence[E], now_s: float, limits: EventLimits = DEFAULT_LIMITS
) -> ValidatedBatch[E]:
    """Validate each event; an event id seen earlier in the batch is refused as a repeat."""
    accepted: list[E] = []
    rejected: list[RejectedEvent] = []
    seen: set[str] = set()
    for index, event in enumerate(events):
        violations = validate_event(event, now_s, limits)
        if not violations and event.event_id in seen:
            violations = [
                Violation(
                    "event_id",
                    Rejection.DUPLICATE_EVENT_ID,
                    "an earlier event of this batch has the same event_id",
                )
            ]
        if violations:
            rejected.append(RejectedEvent(index, tuple(violations)))
        else:
            seen.add(event.event_id)
            accepted.append(event)
    return ValidatedBatch(accepted, rejected)


def field_paths(
    rejected: Iterable[RejectedEvent], container: str = "events"
) -> list[tuple[str, str]]:
    """(``events[3].occurred_at``, description) pairs for google.rpc.BadRequest."""
    pairs: list[tuple[str, str]] = []
    for rejection in rejected:
        for violation in rejection.violations:
            path = f"{container}[{rejection.index}]"
            if violation.field:
                path += f".{violation.field}"
            pairs.append((path, violation.description))
    return pairs
