"""`enrich` as one pure decision: validate, sessionize, parse the device, join the catalog.

The pipeline's ``process`` decodes the message into an :class:`Event`, calls :func:`enrich`
with the time the gateway accepted the event, and hands the :class:`EnrichedEvent` to its
batch committer, or sends the payload to the DLQ topic with :meth:`DeadLetter.properties`. A
payload that does not decode never reaches this module; the pipeline dead-letters it with
``DlqReason.UNDECODABLE`` itself.

``accepted_at_ms`` is the raw message's publish time, not the clock when `enrich` runs
(docs/pipeline.md, "Validation, lateness and the DLQ", says why).

Validation comes first so a rejected event leaves no trace in session state. Unknown items and
missing user agents are not failures: their fields stay empty (``found=False``).

A client's own ``session_id`` (e.g. an order as a basket) wins over the assigned one: the
client knows where its baskets begin and end. The tracker records the event either way, so
assigned sessions come out the same whether or not some events carried ids. A client's device
type hint wins over the parsed type for the same reason (a native app knows what it runs on).
"""

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
