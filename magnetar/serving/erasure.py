"""Erasing one user's state, so that it stays erased.

Every row keyed by the user goes; tenant-wide aggregates and the ledger are not touched. A
tombstone at the erasure time plus the pipeline's maximum future skew makes the pipeline drop
the user's events that occurred before it. A request naming both a user id and an anonymous
id erases both (docs/serving.md, "DeleteUser: erasure that stays erased")."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from magnetar.event_contract import MAX_FUTURE_S
from magnetar.serving.limits import Violations


class ErasureStore(Protocol):
    def erase(
        self, tenant_id: str, subjects: Sequence[str], erased_before_ms: int
    ) -> Mapping[str, int]:
        """Delete the subjects' rows and record their tombstones in one transaction;
        rows deleted per table, every user-keyed table listed."""
        ...


@dataclass(frozen=True, slots=True)
class ErasureReport:
    # (table, rows deleted), by table name.
    deleted: tuple[tuple[str, int], ...]
    # Events of the user that occurred before this instant (epoch ms) are dropped.
    erased_before_ms: int


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class UserErasure:
    def __init__(
        self,
        store: ErasureStore,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        max_future_skew_ms: int = MAX_FUTURE_S * 1000,
    ) -> None:
        self._store = store
        self._clock_ms = clock_ms
        self._max_future_skew_ms = max_future_skew_ms

    def delete_user(self, tenant_id: str, user_id: str, anonymous_id: str) -> ErasureReport:
        violations = Violations()
        violations.identifier("user_id", user_id)
        violations.identifier("anonymous_id", anonymous_id)
        if not (user_id or anonymous_id):
            violations.add("user_id", "one of user_id, anonymous_id is required")
        violations.raise_if_any("invalid user")

        subjects = list(dict.fromkeys(s for s in (user_id, anonymous_id) if s))
        # An event is dropped when it occurred *before* this instant: +1 covers one stamped
        # exactly at the skew's bound.
        erased_before = self._clock_ms() + self._max_future_skew_ms + 1
        deleted = self._store.erase(tenant_id, subjects, erased_before)
        return ErasureReport(tuple(sorted(deleted.items())), erased_before)
