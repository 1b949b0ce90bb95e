"""`enrich` as one pure decision: validate, sessionize, parse the device, join the catalog.

It gives an :class:`EnrichedEvent` or a :class:`DeadLetter`; a rejected event leaves no trace
in session state. Lateness is judged against ``accepted_at_ms``, the raw message's publish
time. Unknown items and missing user agents leave their fields empty; a client's own
``session_id`` and device type win over the derived ones (docs/pipeline.md, "Validation,
lateness and the DLQ")."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from functions.logic.catalog_view import UNKNOWN_ITEM, ItemSnapshot
from functions.logic.devices import DeviceInfo, DeviceType
from functions.logic.records import EnrichedEvent, Event
from functions.logic.sessions import SessionAssignment
from functions.logic.validation import (
    DEFAULT_POLICY,
    DlqReason,
    Rejected,
    ValidationPolicy,
    validate,
)


class SessionAssigner(Protocol):
    def assign(self, tenant_id: str, user_key: str, occurred_at_ms: int) -> SessionAssignment: ...


class CatalogLookup(Protocol):
    def join(self, item_id: str) -> ItemSnapshot: ...


class DeviceLookup(Protocol):
    def parse(self, user_agent: str) -> DeviceInfo: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Route ``event`` to the tenant's DLQ topic because of ``reason``."""

    event: Event
    reason: DlqReason
    field: str
    detail: str

    def properties(self) -> dict[str, str]:
        """Message properties for the DLQ copy, so an operator can filter by reason."""
        return {
            "dlq_reason": self.reason.value,
            "dlq_field": self.field,
            "dlq_detail": self.detail,
            "dlq_stage": "enrich",
        }


EnrichOutcome = EnrichedEvent | DeadLetter


def enrich(
    event: Event,
    accepted_at_ms: int,
    sessions: SessionAssigner,
    catalog: CatalogLookup,
    devices: DeviceLookup,
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> EnrichOutcome:
    """Enrich one event the gateway accepted at ``accepted_at_ms``, or say why it is dead."""
    verdict = validate(event, accepted_at_ms, policy)
    if isinstance(verdict, Rejected):
        return DeadLetter(event, verdict.reason, verdict.field, verdict.detail)

    assignment = sessions.assign(event.tenant_id, event.user_key, event.occurred_at_ms)
    device = devices.parse(event.user_agent)
    if event.device_type_hint:
        device = replace(device, device_type=_hinted_type(event.device_type_hint, device))
    item = catalog.join(event.item_id) if event.item_id else UNKNOWN_ITEM
    return EnrichedEvent(
        event=event,
        accepted_at_ms=accepted_at_ms,
        session_id=event.session_id or assignment.session_id,
        session_assigned=not event.session_id,
        device=device,
        item=item,
        late=verdict.late,
    )


def _hinted_type(hint: str, parsed: DeviceInfo) -> DeviceType:
    try:
        return DeviceType(hint)
    except ValueError:
        # A hint newer than this build: the parsed type is better than none.
        return parsed.device_type
