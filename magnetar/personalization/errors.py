"""Domain errors of the personalization core; the gateway maps each to one status code."""

from __future__ import annotations


class PersonalizationError(Exception):
    """Base of the errors a caller of the personalization core can act on."""


class InvalidRequest(PersonalizationError, ValueError):
    """A request the caller must change (k out of range, an unknown trending window)."""


class UnknownWindow(InvalidRequest):
    """A trending window that the tenant's settings do not define."""


class UnknownItem(PersonalizationError, LookupError):
    """An item the tenant's state has never seen."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id
