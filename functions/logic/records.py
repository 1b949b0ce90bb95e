"""The records the stream logic reads and writes, independent of their wire format.

They mirror ``magnetar.v1.Event`` and ``magnetar.v1.EnrichedEvent``
(``proto/magnetar/v1/events.proto``, ``enriched_event.proto``); the Function classes map the
Protobuf messages to and from these frozen dataclasses, so the logic is testable without
generated code and a contract change touches one mapping instead of every decision.

Conventions of the mapping: times are integer milliseconds since the Unix epoch (UTC) — a
``Timestamp`` converts losslessly at that resolution and integers cannot be naive or aware;
enum values are the lower-case names without their prefix (``EVENT_TYPE_ADD_TO_CART`` →
``"add_to_cart"``, ``DEVICE_TYPE_UNSPECIFIED`` → ``""``), as in
``magnetar.personalization.records``; empty strings stand for absent fields, as in proto3.
``tenant_id`` is not on the wire event: the Function fills it with the Pulsar tenant it runs
for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from functions.logic.catalog_view import ItemSnapshot
from functions.logic.devices import DeviceInfo

_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction as a tenant sent it."""

    event_id: str
    tenant_id: str
    user_id: str
    anonymous_id: str
    type: str
    occurred_at_ms: int
    item_id: str = ""
    session_id: str = ""
    value: float = 0.0
    quantity: int = 0
    attributes: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRIBUTES)
    search_query: str = ""
    # From the event's context.
    user_agent: str = ""
    locale: str = ""
    device_type_hint: str = ""

    @property
    def subject_id(self) -> str:
        """Who the event is counted under (and partitioned by): the user, else the visitor."""
        return self.user_id or self.anonymous_id

    @property
    def user_key(self) -> str:
        """The subject with its kind, for per-user state such as sessions.

        The prefix keeps the two id spaces apart: an anonymous id that happens to equal some
        user's id never shares that user's sessions.
        """
        if self.user_id:
            return f"u:{self.user_id}"
        return f"a:{self.anonymous_id}"


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    """An accepted event with what `enrich` derived from it."""

    event: Event
    # When the gateway accepted the event: the raw message's publish time.
    accepted_at_ms: int
    # The client's session id when given, otherwise the one assigned by inactivity gap.
    session_id: str
    # True when ``session_id`` was assigned here rather than sent by the client.
    session_assigned: bool
    device: DeviceInfo
    item: ItemSnapshot
    # It reached the gateway later than the lateness threshold after ``occurred_at``.
    late: bool

    @property
    def tenant_id(self) -> str:
        return self.event.tenant_id

    @property
    def subject_id(self) -> str:
        return self.event.subject_id
