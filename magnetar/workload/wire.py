"""Workload records → the wire contract, so replays and the generator go through the gateway.

Times are shifted by a constant so a replay keeps its rhythm but happens now (the pipeline
dead-letters events older than its horizon). Cancellations travel as `EVENT_TYPE_CANCEL`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent
from magnetar.v1 import catalog_service_pb2, events_pb2

_WIRE_TYPES = {
    records.VIEW: events_pb2.EVENT_TYPE_VIEW,
    records.CLICK: events_pb2.EVENT_TYPE_CLICK,
    records.ADD_TO_CART: events_pb2.EVENT_TYPE_ADD_TO_CART,
    records.REMOVE_FROM_CART: events_pb2.EVENT_TYPE_REMOVE_FROM_CART,
    records.PURCHASE: events_pb2.EVENT_TYPE_PURCHASE,
    records.ADD_TO_WISHLIST: events_pb2.EVENT_TYPE_ADD_TO_WISHLIST,
    records.SHARE: events_pb2.EVENT_TYPE_SHARE,
    records.CANCEL: events_pb2.EVENT_TYPE_CANCEL,
}


def to_wire_event(record: EnrichedEvent, shift_ms: int = 0) -> events_pb2.Event | None:
    """The event a client would send; None for types the contract has no value for."""
    wire_type = _WIRE_TYPES.get(record.type)
    if wire_type is None:
        return None
    event = events_pb2.Event(
        event_id=record.event_id,
        user_id=record.user_id,
        session_id=record.session_id,
        type=wire_type,
        item_id=record.item_id,
        value=record.value,
        quantity=max(0, record.quantity),
    )
    event.occurred_at.FromMilliseconds(record.occurred_at + shift_ms)
    return event


def wire_events(records_: Iterable[EnrichedEvent], shift_ms: int = 0) -> Iterator[events_pb2.Event]:
    for record in records_:
        event = to_wire_event(record, shift_ms)
        if event is not None:
            yield event


def catalog_items(records_: Iterable[EnrichedEvent]) -> list[catalog_service_pb2.Item]:
    """One catalog item per item the records mention, with the categories and price seen."""
    items: dict[str, catalog_service_pb2.Item] = {}
    for record in records_:
        if record.item_id and record.item_id not in items:
            items[record.item_id] = catalog_service_pb2.Item(
                item_id=record.item_id,
                title=record.item_id.replace("-", " ").title(),
                categories=list(record.categories),
                price=record.price,
                available=True,
            )
    return list(items.values())
