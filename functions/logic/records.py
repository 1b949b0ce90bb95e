"""The records the stream logic reads and writes, independent of their wire format.

The Function classes map the Protobuf ``Event``/``EnrichedEvent`` to and from these frozen
dataclasses, so the logic is testable without generated code and a contract change touches
one mapping instead of every decision. Times are integer milliseconds since the Unix epoch
(UTC): a Protobuf ``Timestamp`` converts losslessly at that resolution, and integers cannot
carry the naive-versus-aware ambiguity of ``datetime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction as a tenant sent it (after Protobuf decoding).

    Empty strings stand for absent optional fields, as in proto3. ``type`` is the event
    type's short name (``"view"``, ``"add_to_cart"``, ...); the Function maps the proto enum.
    """

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
    user_agent: str = ""
    locale: str = ""

    @property
    def user_key(self) -> str:
        """Who the event belongs to for sessions: the user id, else the anonymous id.

        The two namespaces are kept apart with a prefix so an anonymous id that happens to
        equal some user id never shares that user's sessions.
        """
        if self.user_id:
            return f"u:{self.user_id}"
        return f"a:{self.anonymous_id}"


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    """An accepted event with what `enrich` added: session, device, catalog join, lateness.

    Catalog fields are empty (``""``, ``()``, ``None``) when the item is not in the catalog
    view; device fields are empty when there was no user agent.
    """

    event: Event
    session_id: str
    device_type: str
    device_family: str
    browser: str
    browser_version: str
    os: str
    os_version: str
    title: str
    categories: tuple[str, ...]
    price: float | None
    late: bool
    accepted_at_ms: int
