"""Builders for the records the stream logic works on, valid unless told otherwise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from functions.logic.records import Event

# 2024-03-01T12:00:00Z: a fixed "now" keeps every test independent of the wall clock.
NOW_MS = 1_709_294_400_000
MINUTE_MS = 60_000

FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def make_event(**overrides: Any) -> Event:
    event = Event(
        event_id="evt-0001",
        tenant_id="acme",
        user_id="user-1",
        anonymous_id="",
        type="view",
        occurred_at_ms=NOW_MS - MINUTE_MS,
        item_id="sku-1",
        value=0.0,
        quantity=0,
        user_agent=FIREFOX_ON_LINUX,
        locale="en-GB",
    )
    return replace(event, **overrides)
