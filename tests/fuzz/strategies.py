"""Hypothesis strategies for the contract's messages: well-typed, but anything the types allow.

Strings are any Unicode a protobuf ``string`` can hold (control characters and NUL included),
numbers run to their type's limits (NaN and infinities for doubles, the whole uint32 range),
enums take numbers this build has no name for (proto3 enums are open), timestamps land near
"now" most of the time (so many events pass validation and reach the later stages) and
anywhere in int64 seconds otherwise.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from magnetar.v1 import catalog_service_pb2, enriched_event_pb2, events_pb2

NOW_MS = int(time.time() * 1000)
HOUR_MS = 60 * 60 * 1000

any_text = st.text(max_size=40)
printable_id = st.text(
    alphabet=string.ascii_letters + string.digits + "-_:.", min_size=1, max_size=24
)
with_control = st.builds(
    lambda head, control, tail: head + control + tail,
    printable_id,
    st.sampled_from(["\x00", "\n", "\x1b", "\x7f", "\x85"]),
    st.text(max_size=4),
)
# Mostly ids a client would send, sometimes anything at all (empty, control characters, long).
ids = st.one_of(
    printable_id,
    printable_id,
    printable_id,
    with_control,
    any_text,
    st.text(min_size=120, max_size=140),
)
enum_numbers = st.one_of(st.integers(0, 12), st.integers(-(2**31), 2**31 - 1))
doubles = st.one_of(st.floats(0, 10), st.floats(allow_nan=True, allow_infinity=True))
uint32 = st.one_of(st.integers(0, 20), st.integers(0, 2**32 - 1))
user_agents = st.one_of(
    st.just(""),
    st.sampled_from(
        [
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
        ]
    ),
    st.text(max_size=600),
)


@st.composite
def timestamps_ms(draw: st.DrawFn) -> tuple[int, int]:
    """(seconds, nanos) of a Timestamp: near now, or anything int64/int32 allow."""
    if draw(st.booleans()):
        at = NOW_MS + draw(st.integers(-8 * 24 * HOUR_MS, HOUR_MS))
        return at // 1000, (at % 1000) * 1_000_000
    return draw(st.integers(-(2**63), 2**63 - 1)), draw(st.integers(-(2**31), 2**31 - 1))


@st.composite
def events(draw: st.DrawFn) -> events_pb2.Event:
    event = events_pb2.Event(
        event_id=draw(ids),
        user_id=draw(st.one_of(st.just(""), ids)),
        anonymous_id=draw(st.one_of(st.just(""), ids)),
        session_id=draw(st.one_of(st.just(""), ids)),
        item_id=draw(st.one_of(st.just(""), ids)),
        value=draw(doubles),
        quantity=draw(uint32),
        search_query=draw(st.one_of(st.just(""), any_text)),
    )
    event.type = draw(enum_numbers)  # type: ignore[assignment]
    if draw(st.integers(0, 9)):
        event.occurred_at.seconds, event.occurred_at.nanos = draw(timestamps_ms())
    for key, value in draw(
        st.dictionaries(
            st.one_of(st.from_regex(r"[a-z0-9_.-]{1,8}", fullmatch=True), any_text),
            any_text,
            max_size=40,
        )
    ).items():
        event.attributes[key] = value
    if draw(st.booleans()):
        context = event.context
        context.user_agent = draw(user_agents)
        context.locale = draw(st.one_of(st.sampled_from(["en-GB", "de", ""]), any_text))
        context.device_type = draw(enum_numbers)  # type: ignore[assignment]
        context.time_zone = draw(any_text)
        context.app_version = draw(any_text)
        context.screen_width = draw(uint32)
        context.screen_height = draw(uint32)
    return event


@st.composite
def catalog_items(draw: st.DrawFn) -> catalog_service_pb2.Item:
    item = catalog_service_pb2.Item(
        item_id=draw(ids),
        title=draw(any_text),
        price=draw(doubles),
    )
    item.categories.extend(draw(st.lists(st.one_of(printable_id, any_text), max_size=6)))
    return item


@st.composite
def enriched_events(draw: st.DrawFn) -> enriched_event_pb2.EnrichedEvent:
    message = enriched_event_pb2.EnrichedEvent(
        tenant_id=draw(st.one_of(st.just("fuzz"), any_text)),
        session_id=draw(st.one_of(st.just(""), ids)),
        session_assigned=draw(st.booleans()),
        late=draw(st.booleans()),
        subject_id=draw(st.one_of(st.just(""), ids)),
    )
    message.event.CopyFrom(draw(events()))
    message.item.found = draw(st.booleans())
    message.item.categories.extend(draw(st.lists(any_text, max_size=4)))
    message.item.price = draw(doubles)
    message.device.device_type = draw(enum_numbers)  # type: ignore[assignment]
    return message


def mutated(payload: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """`payload` with a few bytes flipped, dropped or inserted: near-valid encodings."""
    buffer = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        if not buffer:
            buffer.extend(draw(st.binary(min_size=1, max_size=4)))
            continue
        at = draw(st.integers(0, len(buffer) - 1))
        action = draw(st.sampled_from(["flip", "drop", "insert", "truncate"]))
        if action == "flip":
            buffer[at] ^= draw(st.integers(1, 255))
        elif action == "drop":
            del buffer[at]
        elif action == "insert":
            buffer[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del buffer[at:]
    return bytes(buffer)


@st.composite
def near_valid(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A payload from `base`, mutated."""
    return mutated(draw(base), draw)
