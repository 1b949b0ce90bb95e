"""The event contract (proto/magnetar/v1/events.proto) as data: limits, patterns, types.

The one copy of every limit the proto comments document. The gateway refuses what breaks
them (`gateway.event_validation`), the pipeline dead-letters what reaches a topic anyway
(`functions.logic.validation`), and the catalog and serving requests share the id and
attribute rules. `tests/unit/test_event_contract.py` holds these values equal to the numbers
in the proto comments. Pure: no I/O, no generated code. Lengths are UTF-8 bytes.
"""

from __future__ import annotations

import re
from enum import IntEnum

# Every id: event_id, user_id, anonymous_id, session_id, item_id, a category.
MAX_ID_BYTES = 128
MAX_SEARCH_QUERY_BYTES = 512
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY_BYTES = 64
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_USER_AGENT_BYTES = 512
MAX_LOCALE_BYTES = 35
MAX_TIME_ZONE_BYTES = 64
MAX_APP_VERSION_BYTES = 64
MAX_SCREEN_PIXELS = 100_000
# The whole event, serialized.
MAX_EVENT_BYTES = 16 * 1024
MAX_VALUE = 1e9
MAX_RATING = 5.0
MAX_QUANTITY = 10_000
# How far `occurred_at` may be after acceptance (clock skew) and, for live events, before it.
MAX_FUTURE_S = 5 * 60
MAX_AGE_S = 7 * 24 * 3600
# Events per Ingest call or per stream batch.
MAX_BATCH_EVENTS = 1000

# event_id: printable ASCII without spaces.
EVENT_ID = re.compile(r"[\x21-\x7e]+")
# C0 and C1 control characters. NUL cannot be stored in PostgreSQL text or jsonb; the others
# in an id are a client bug, never data.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Attribute keys: 1 or more of these (error messages quote the class).
ATTRIBUTE_KEY_CHARS = "[a-z0-9_.-]"
ATTRIBUTE_KEY = re.compile(ATTRIBUTE_KEY_CHARS + "+")
# A BCP 47 tag's characters: letters, digits and '-'.
LOCALE = re.compile(r"[A-Za-z0-9-]+")


class EventType(IntEnum):
    """magnetar.v1.EventType without its prefix and without UNSPECIFIED (0)."""

    VIEW = 1
    CLICK = 2
    ADD_TO_CART = 3
    REMOVE_FROM_CART = 4
    PURCHASE = 5
    SEARCH = 6
    RATE = 7
    IMPRESSION = 8
    ADD_TO_WISHLIST = 9
    SHARE = 10
    CANCEL = 11

    @property
    def label(self) -> str:
        """The name the pipeline and the state speak: ADD_TO_CART → ``"add_to_cart"``."""
        return self.name.lower()


# magnetar.v1.DeviceType numbers, UNSPECIFIED (0) included.
KNOWN_DEVICE_TYPES = frozenset(range(7))


def utf8_len(text: str) -> int:
    """The UTF-8 length of `text`; ASCII (nearly every id) is measured without encoding."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
