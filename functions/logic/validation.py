"""Semantic validation of an event and the lateness policy: accept, flag late, or dead-letter.

`enrich` runs this first; a rejected event goes to ``persistent://<tenant>/events/dlq`` with
its :class:`DlqReason`, the field at fault and a readable detail, and the stream moves on.
The gateway enforces the same limits on the way in (``proto/magnetar/v1/events.proto``), so
in normal operation nothing is rejected here; `enrich` checks again because the topic is the
real boundary — old producers, tools publishing directly, replays — and a malformed event must
end in the DLQ, not in state. Reasons use the gateway's vocabulary where they mean the same.

Time is judged against ``accepted_at_ms``, the moment the gateway accepted the event (the raw
message's publish time), not the moment `enrich` runs: the verdict for a message is then the
same however late, or however often, the pipeline processes it — a backlog after an outage
does not turn good events into late or too-old ones, and a replay decides as the first run did.

Checks, in this order (the first failure is reported):

1. identity: ``event_id`` 1 to 128 bytes of printable ASCII without spaces (it becomes a
   durable state key in `dedupe` and a ledger key in `materialize`); a ``user_id`` or an
   ``anonymous_id``; ids at most 128 bytes without control characters (NUL cannot be
   stored in PostgreSQL); ``locale`` at most 35 bytes of letters, digits and ``-``;
   ``user_agent`` at most 512 bytes;
2. type: present; a type this build does not know is **accepted** by default
   (``accept_unknown_types``), as the contract asks — a gateway upgraded before the pipeline
   must not send a new type's events to the DLQ; materialize gives them no weight. Known
   types need an ``item_id``, except ``search``, which needs a ``search_query`` (at most 512
   bytes) and no item;
3. numbers: ``value`` finite, from 0 to 1e9 (a rating from 0 to 5); ``quantity`` from 0 to
   10 000, where 0 means 1;
4. attributes: at most 32, keys 1 to 64 bytes of ``[a-z0-9_.-]``, values at most 1024 bytes;
5. time, against ``accepted_at_ms``:

   - no timestamp → ``MISSING_FIELD``;
   - more than ``max_future_skew_ms`` (5 min) after acceptance → ``FUTURE_TIMESTAMP``: beyond
     normal clock drift the timestamp is wrong, and a future event would look freshest to
     every decayed score for as long as its timestamp stays ahead;
   - more than ``retention_horizon_ms`` (7 days) before acceptance → ``TOO_OLD``: the
     processed-event ledger of ``materialize`` expires by time partition and only has to
     remember ids this long, so an older event could no longer be guaranteed to count once
     (keep the ledger's retention at least this horizon);
   - more than ``lateness_threshold_ms`` (15 min) before acceptance but within the horizon →
     accepted with ``late=True``: it counts towards long-lived state (affinities,
     co-visitation) and sessions as usual; the flag lets ``materialize`` keep it out of
     windows it has already closed (trending);
   - otherwise on time; a timestamp slightly after acceptance (within the skew) is fine.

Imported history (``ImportEvents``, the tenant's ``events/import`` topic) is judged by
`IMPORT_POLICY`: an event of any age is accepted and never flagged late (it is history, not
a live event that arrived late); the future limit, identity, type and field checks are the
same. `policy_for_topic` picks the policy from the topic a message came from. Counting an
imported event once relies on dedupe and the ledger as for live events; the ledger keeps an
id `ledger_keep_ms` after its first commit (docs/pipeline.md, "Imports and the ledger").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from functions.logic.records import Event

MINUTE_MS = 60 * 1000
DAY_MS = 24 * 60 * MINUTE_MS

SEARCH = "search"
RATE = "rate"
# The wire's types (magnetar.v1.EventType), lower-case without the prefix.
WIRE_EVENT_TYPES = frozenset(
    {
        "view",
        "click",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        SEARCH,
        RATE,
        "impression",
        "add_to_wishlist",
        "share",
        "cancel",
    }
)

_EVENT_ID = re.compile(r"[\x21-\x7e]+")
_LOCALE = re.compile(r"[A-Za-z0-9-]*")
# C0 and C1 control characters, as the gateway refuses them. NUL in particular cannot be
# stored in a PostgreSQL text or jsonb value: an id carrying one would fail materialize's
# commit on every retry and hold its whole batch back.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ATTRIBUTE_KEY = re.compile(r"[a-z0-9_.-]+")


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
    """Limits and time thresholds; the Function builds one from its user config.

    Defaults are the contract's limits (``events.proto``); lengths are UTF-8 bytes.
    """

    max_future_skew_ms: int = 5 * MINUTE_MS
    lateness_threshold_ms: int = 15 * MINUTE_MS
    retention_horizon_ms: int = 7 * DAY_MS
    known_types: frozenset[str] = WIRE_EVENT_TYPES
    accept_unknown_types: bool = True
    max_event_id_bytes: int = 128
    max_id_bytes: int = 128
    max_locale_bytes: int = 35
    max_user_agent_bytes: int = 512
    max_search_query_bytes: int = 512
    max_attributes: int = 32
    max_attribute_key_bytes: int = 64
    max_attribute_value_bytes: int = 1024
    max_value: float = 1e9
    max_rating: float = 5.0
    max_quantity: int = 10_000
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


def _size(text: str) -> int:
    return len(text.encode())


def _too_long(field: str, text: str, limit: int) -> Rejected | None:
    size = _size(text)
    if size > limit:
        return Rejected(DlqReason.FIELD_TOO_LONG, field, f"{size} bytes, limit {limit}")
    return None


def _check_identity(event: Event, policy: ValidationPolicy) -> Rejected | None:
    if not event.event_id:
        return Rejected(DlqReason.MISSING_FIELD, "event_id", "required")
    too_long = _too_long("event_id", event.event_id, policy.max_event_id_bytes)
    if too_long:
        return too_long
    if not _EVENT_ID.fullmatch(event.event_id):
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
        if _CONTROL.search(text):
            return Rejected(DlqReason.INVALID_FIELD, field, "control characters are not allowed")
    if not _LOCALE.fullmatch(event.locale):
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
        if not _ATTRIBUTE_KEY.fullmatch(key):
            return Rejected(DlqReason.INVALID_FIELD, "attributes", f"key {key!r}: [a-z0-9_.-]")
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
