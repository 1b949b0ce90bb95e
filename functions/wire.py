"""Protobuf on the topics ⇄ the records the pure logic speaks.

One place maps the contract (`magnetar.v1`) onto `functions.logic.records` (for dedupe and
enrich) and `magnetar.personalization.records` (for materialize), so a contract change
touches this module and nothing else.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from functions.logic import records as stream
from magnetar.personalization.records import EnrichedEvent as StateEvent
from magnetar.raw_events import ERASURE_MARKER_ATTRIBUTE
from magnetar.v1 import enriched_event_pb2, events_pb2

_TYPE_PREFIX = "EVENT_TYPE_"


class UndecodablePayload(ValueError):
    """The bytes are not a message of the expected type."""


def decode_event(payload: bytes) -> events_pb2.Event:
    message = events_pb2.Event()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise UndecodablePayload(str(exc)) from exc
    return message


def decode_enriched(payload: bytes) -> enriched_event_pb2.EnrichedEvent:
    message = enriched_event_pb2.EnrichedEvent()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise UndecodablePayload(str(exc)) from exc
    return message


def event_type_name(value: int) -> str:
    """`EVENT_TYPE_ADD_TO_CART` → `"add_to_cart"`; unknown numbers keep their number."""
    try:
        name = events_pb2.EventType.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return f"unknown_{value}"
    return name.removeprefix(_TYPE_PREFIX).lower()


def timestamp_ms(ts: object) -> int:
    seconds = int(getattr(ts, "seconds", 0))
    nanos = int(getattr(ts, "nanos", 0))
    return seconds * 1000 + nanos // 1_000_000


def is_erasure_marker(event: events_pb2.Event) -> bool:
    """DeleteUser's marker (`magnetar.raw_events.ERASURE_MARKER_ATTRIBUTE`), not an event."""
    return not event.event_id and ERASURE_MARKER_ATTRIBUTE in event.attributes


def subject_of(event: events_pb2.Event) -> str:
    """The key a user's events travel under: the user id, else the anonymous id."""
    return event.user_id or event.anonymous_id


def _device_hint(message: events_pb2.Event) -> str:
    """The client's device type, lower-case; proto3 enums are open, so a number this build
    has no name for (a newer client) becomes ``unknown_<n>``, which enrich ignores in favour
    of the parsed type — raising here would nack the message into endless redelivery."""
    value = message.context.device_type
    if not value:
        return ""
    try:
        name = events_pb2.DeviceType.Name(value)
    except ValueError:
        return f"unknown_{value}"
    return name.removeprefix("DEVICE_TYPE_").lower()


def to_stream_event(message: events_pb2.Event, tenant_id: str) -> stream.Event:
    return stream.Event(
        event_id=message.event_id,
        tenant_id=tenant_id,
        user_id=message.user_id,
        anonymous_id=message.anonymous_id,
        type=event_type_name(message.type),
        occurred_at_ms=timestamp_ms(message.occurred_at),
        item_id=message.item_id,
        session_id=message.session_id,
        value=message.value,
        quantity=message.quantity,
        attributes=dict(message.attributes),
        search_query=message.search_query,
        user_agent=message.context.user_agent,
        locale=message.context.locale,
        device_type_hint=_device_hint(message),
    )


def to_enriched_proto(
    enriched: stream.EnrichedEvent, original: events_pb2.Event
) -> enriched_event_pb2.EnrichedEvent:
    """The wire form of `enrich`'s output; the event itself is passed through unchanged."""
    message = enriched_event_pb2.EnrichedEvent(
        tenant_id=enriched.event.tenant_id,
        session_id=enriched.session_id,
        session_assigned=enriched.session_assigned,
        late=enriched.late,
        subject_id=enriched.event.subject_id,
    )
    message.event.CopyFrom(original)
    message.accepted_at.FromMilliseconds(enriched.accepted_at_ms)
    device = enriched.device
    if device.device_type:
        message.device.device_type = events_pb2.DeviceType.Value(
            f"DEVICE_TYPE_{device.device_type.value.upper()}"
        )
    message.device.browser = device.browser
    message.device.browser_version = device.browser_version
    message.device.os = device.os
    message.device.os_version = device.os_version
    message.device.device_model = device.device_model
    message.device.is_bot = device.is_bot
    item = enriched.item
    message.item.found = item.found
    message.item.title = item.title
    message.item.categories.extend(item.categories)
    if item.price is not None:
        message.item.price = item.price
    return message


def state_event_of(enriched: stream.EnrichedEvent) -> StateEvent:
    """What the state counts of an enriched event: the same record as `to_state_event` of its
    wire form (`to_enriched_proto`), without building and reading that message."""
    event = enriched.event
    price = enriched.item.price
    return StateEvent(
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        user_id=event.subject_id,
        session_id=enriched.session_id,
        type=event.type,
        item_id=event.item_id,
        occurred_at=event.occurred_at_ms,
        value=event.value,
        quantity=event.quantity or 1,
        categories=tuple(enriched.item.categories),
        price=0.0 if price is None else price,
    )


def to_state_event(message: enriched_event_pb2.EnrichedEvent) -> StateEvent:
    event = message.event
    return StateEvent(
        event_id=event.event_id,
        tenant_id=message.tenant_id,
        user_id=message.subject_id or subject_of(event),
        session_id=message.session_id or event.session_id,
        type=event_type_name(event.type),
        item_id=event.item_id,
        occurred_at=timestamp_ms(event.occurred_at),
        value=event.value,
        quantity=event.quantity or 1,
        categories=tuple(message.item.categories),
        price=message.item.price,
    )
