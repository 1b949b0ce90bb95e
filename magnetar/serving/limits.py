"""The documented limits of serving requests, checked all at once.

A request that breaks several limits is told about each of them (one field violation per
broken limit) in a single INVALID_ARGUMENT, so a client fixes its request in one round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from magnetar.errors import FieldViolation, InvalidArgument
from magnetar.event_contract import CONTROL, MAX_ID_BYTES, utf8_len

MAX_CONTEXT_ITEMS = 20
MAX_EXCLUDED_ITEMS = 1000
MAX_FILTER_CATEGORIES = 50


class Violations:
    """Collects field violations; `raise_if_any` turns them into one InvalidArgument."""

    def __init__(self) -> None:
        self.found: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.found.append(FieldViolation(field, description))

    def text(self, field: str, value: str, *, max_bytes: int, required: bool = False) -> None:
        """A free-form string: at most `max_bytes`, no NUL (PostgreSQL cannot store it)."""
        if required and not value:
            self.add(field, "is required")
        elif utf8_len(value) > max_bytes:
            self.add(field, f"must be at most {max_bytes} bytes")
        elif "\x00" in value:
            self.add(field, "must not contain NUL characters")

    def identifier(
        self, field: str, value: str, *, required: bool = False, max_bytes: int = MAX_ID_BYTES
    ) -> None:
        """An id or a category: at most `max_bytes`, no control characters."""
        if not value:
            if required:
                self.add(field, "is required")
            return
        if utf8_len(value) > max_bytes:
            self.add(field, f"must be at most {max_bytes} bytes")
        elif CONTROL.search(value):
            self.add(field, "must not contain control characters")

    def identifiers(self, field: str, values: Sequence[str], *, limit: int) -> None:
        """A list of non-empty ids, at most `limit` of them."""
        if len(values) > limit:
            self.add(field, f"must hold at most {limit} entries, got {len(values)}")
            return
        for index, value in enumerate(values):
            self.identifier(f"{field}[{index}]", value, required=True)

    def k(self, field: str, value: int, max_k: int) -> None:
        if not 1 <= value <= max_k:
            self.add(field, f"must be between 1 and {max_k}, got {value}")

    def finite(self, field: str, value: float, low: float, high: float) -> None:
        if not (math.isfinite(value) and low <= value <= high):
            self.add(field, f"must be a finite number from {low:g} to {high:g}")

    def raise_if_any(self, message: str, reason: str = "INVALID_ARGUMENT") -> None:
        if self.found:
            first = self.found[0]
            raise InvalidArgument(
                f"{message}: {first.field} {first.description}", self.found, reason=reason
            )
