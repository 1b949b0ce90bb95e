"""The limits the proto comments document are the ones `magnetar.event_contract` holds.

The comments are the contract clients read; the module is what the gateway and the pipeline
enforce. Every number a comment gives as a limit ("at most 128 bytes", "1 to 64 bytes",
"more than 7 days") is parsed out of the .proto files and compared with the module, field by
field, so a change on either side without the other fails here.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from functions import wire
from magnetar import event_contract as contract
from magnetar.serving import catalog
from magnetar.v1 import events_pb2

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "magnetar" / "v1"

# "at most 128 bytes", "1 to 64 bytes", "from 0 to 1e9", "more than 7 days", "larger than 16 KiB"
_LIMIT = re.compile(
    r"\b(?:at most|to|than)\s+(\d+(?:\.\d+)?(?:e\d+)?)(?:\s+(bytes|KiB|MiB|minutes|days)\b)?",
    re.IGNORECASE,
)
_UNIT = {"": 1, "bytes": 1, "kib": 1024, "mib": 1024 * 1024, "minutes": 60, "days": 86_400}
_BLOCK = re.compile(r"(message|enum|service)\s+(\w+)")
_MEMBER = re.compile(r"(\w+)\s*=\s*\d+\s*[;\[]")


def documented(proto: str) -> dict[str, list[float]]:
    """`Message.field`, `Message` or `Enum.VALUE` → the limits its comment states, in order.

    Services are left out: the limits of their RPCs are the transport's, not the event's.
    """
    found: dict[str, list[float]] = {}
    enclosing: list[str] = []  # a message or enum name, "service", or "" for other braces
    comment: list[str] = []
    for line in proto.splitlines():
        text = line.strip()
        if text.startswith("//"):
            comment.append(text.removeprefix("//"))
            continue
        block = _BLOCK.match(text)
        member = _MEMBER.search(text) if not text.startswith(("option", "rpc")) else None
        name = block.group(2) if block else member.group(1) if member else None
        in_service = "service" in enclosing or (block is not None and block.group(1) == "service")
        if name is not None and not in_service:
            limits = [
                float(number) * _UNIT[unit.lower()]
                for number, unit in _LIMIT.findall(" ".join(comment))
            ]
            if limits:
                found[".".join([*filter(None, enclosing), name])] = limits
        for char in text:
            if char == "{":
                opened = "" if block is None else "service" if in_service else block.group(2)
                enclosing.append(opened)
                block = None
            elif char == "}":
                enclosing.pop()
        if text:
            comment = []
    return found


def read(proto: str) -> str:
    return (PROTO_DIR / proto).read_text()


def comment_of(proto: str, declaration: str) -> str:
    """The comment right above the first line of `proto` holding `declaration`."""
    lines = read(proto).splitlines()
    index = next(n for n, line in enumerate(lines) if declaration in line)
    comment: list[str] = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("//"):
            break
        comment.insert(0, line.strip().removeprefix("//").strip())
    return " ".join(comment)


C = contract
EVENTS = {
    "EventType.EVENT_TYPE_RATE": [C.MAX_RATING],
    "EventContext.user_agent": [C.MAX_USER_AGENT_BYTES],
    "EventContext.locale": [C.MAX_LOCALE_BYTES],
    "EventContext.time_zone": [C.MAX_TIME_ZONE_BYTES],
    "EventContext.app_version": [C.MAX_APP_VERSION_BYTES],
    "EventContext.screen_width": [C.MAX_SCREEN_PIXELS],
    "EventContext.screen_height": [C.MAX_SCREEN_PIXELS],
    "Event": [C.MAX_EVENT_BYTES],
    "Event.event_id": [C.MAX_ID_BYTES],
    "Event.user_id": [C.MAX_ID_BYTES],
    "Event.anonymous_id": [C.MAX_ID_BYTES],
    "Event.session_id": [C.MAX_ID_BYTES],
    "Event.item_id": [C.MAX_ID_BYTES],
    "Event.occurred_at": [C.MAX_FUTURE_S, C.MAX_AGE_S],
    "Event.value": [C.MAX_RATING, C.MAX_VALUE],
    "Event.quantity": [C.MAX_QUANTITY],
    "Event.attributes": [C.MAX_ATTRIBUTES, C.MAX_ATTRIBUTE_KEY_BYTES, C.MAX_ATTRIBUTE_VALUE_BYTES],
    "Event.search_query": [C.MAX_SEARCH_QUERY_BYTES],
}
EVENT_SERVICE = {
    "RejectionReason.REJECTION_REASON_EVENT_TOO_LARGE": [C.MAX_EVENT_BYTES],
    "RejectionReason.REJECTION_REASON_OCCURRED_IN_FUTURE": [C.MAX_FUTURE_S],
    "RejectionReason.REJECTION_REASON_OCCURRED_TOO_LONG_AGO": [C.MAX_AGE_S],
    "IngestRequest.events": [C.MAX_BATCH_EVENTS],
    "StreamEventsRequest.events": [C.MAX_BATCH_EVENTS],
    "ImportEventsRequest.events": [C.MAX_BATCH_EVENTS],
}
# The catalog shares the id and attribute rules; the rest is `magnetar.serving.catalog`'s.
CATALOG_SERVICE = {
    "Item.item_id": [C.MAX_ID_BYTES],
    "Item.title": [catalog.MAX_TITLE_BYTES],
    "Item.categories": [catalog.MAX_CATEGORIES, C.MAX_ID_BYTES],
    "Item.price": [catalog.MAX_PRICE],
    "Item.attributes": [C.MAX_ATTRIBUTES, C.MAX_ATTRIBUTE_KEY_BYTES, C.MAX_ATTRIBUTE_VALUE_BYTES],
    "UpsertItemsRequest.items": [catalog.MAX_BATCH_ITEMS],
    "GetItemRequest.item_id": [C.MAX_ID_BYTES],
    "DeleteItemRequest.item_id": [C.MAX_ID_BYTES],
}


@pytest.mark.parametrize(
    ("proto", "expected"),
    [
        ("events.proto", EVENTS),
        ("event_service.proto", EVENT_SERVICE),
        ("catalog_service.proto", CATALOG_SERVICE),
    ],
    ids=["events.proto", "event_service.proto", "catalog_service.proto"],
)
def test_every_documented_limit_is_the_modules(
    proto: str, expected: dict[str, list[float]]
) -> None:
    assert documented(read(proto)) == as_floats(expected)


@pytest.mark.parametrize(
    ("before", "after", "field", "limits"),
    [
        ("At most 35 bytes", "At most 36 bytes", "EventContext.locale", [36.0]),
        ("at most 16 KiB", "at most 32 KiB", "Event", [32.0 * 1024]),
        ("at most 7 days", "at most 8 days", "Event.occurred_at", [300.0, 8.0 * 86_400]),
        (
            "The client's session id, if it keeps one.",
            "At most 9.",
            "Event.session_id",
            [9.0, 128.0],
        ),
    ],
)
def test_a_limit_edited_in_a_comment_is_read_as_edited(
    before: str, after: str, field: str, limits: list[float]
) -> None:
    text = read("events.proto")
    assert before in text
    assert documented(text.replace(before, after))[field] == limits


def as_floats(expected: dict[str, list[float]]) -> dict[str, list[float]]:
    return {name: [float(limit) for limit in limits] for name, limits in expected.items()}


def test_attribute_keys_use_the_documented_characters() -> None:
    for proto, declaration in (
        ("events.proto", "map<string, string> attributes"),
        ("catalog_service.proto", "map<string, string> attributes"),
    ):
        classes = re.findall(r"\[[^\]]+\]", comment_of(proto, declaration))
        assert classes == [C.ATTRIBUTE_KEY_CHARS]
    assert C.ATTRIBUTE_KEY.pattern == C.ATTRIBUTE_KEY_CHARS + "+"


SAMPLE = [chr(n) for n in range(0x250)] + ["é", "日", "\u2028", "\U0001f600"]


def test_event_ids_are_printable_ascii_without_spaces() -> None:
    assert "printable ASCII without spaces" in comment_of("events.proto", "event_id =")
    for char in SAMPLE:
        expected = char.isascii() and char.isprintable() and char != " "
        assert bool(C.EVENT_ID.fullmatch(char)) is expected, repr(char)


def test_locales_are_letters_digits_and_dashes() -> None:
    assert "letters, digits and '-' only" in comment_of("events.proto", "locale =")
    for char in SAMPLE:
        expected = char.isascii() and (char.isalnum() or char == "-")
        assert bool(C.LOCALE.fullmatch(char)) is expected, repr(char)


def test_control_characters_are_unicodes_c0_and_c1() -> None:
    for char in SAMPLE:
        expected = unicodedata.category(char) == "Cc"
        assert bool(C.CONTROL.search(char)) is expected, repr(char)


def test_event_types_are_the_generated_enum() -> None:
    generated = {
        name.removeprefix("EVENT_TYPE_"): number
        for name, number in events_pb2.EventType.items()
        if number != events_pb2.EVENT_TYPE_UNSPECIFIED
    }
    assert {kind.name: kind.value for kind in C.EventType} == generated
    # The pipeline's labels are the names it reads off the wire.
    assert [kind.label for kind in C.EventType] == [wire.event_type_name(k) for k in C.EventType]
    assert set(events_pb2.DeviceType.values()) == C.KNOWN_DEVICE_TYPES


@pytest.mark.parametrize("text", ["", "ascii", "é", "日本", "\U0001f600", "a\ud800b"])
def test_utf8_len_is_the_encoded_length(text: str) -> None:
    assert C.utf8_len(text) == len(text.encode("utf-8", "surrogatepass"))
