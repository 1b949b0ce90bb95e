"""Erasure names who to erase and reports what went, per table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from functions.logic.validation import DEFAULT_POLICY
from magnetar.errors import InvalidArgument
from magnetar.serving.erasure import UserErasure


class FakeErasureStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], int]] = []

    def erase(
        self, tenant_id: str, subjects: Sequence[str], erased_before_ms: int
    ) -> Mapping[str, int]:
        self.calls.append((tenant_id, list(subjects), erased_before_ms))
        return {"user_activity": len(subjects), "affinities": 0}


def test_both_ids_are_erased_and_the_report_lists_every_table() -> None:
    store = FakeErasureStore()
    erasure = UserErasure(store, clock_ms=lambda: 42, max_future_skew_ms=0)
    report = erasure.delete_user("acme", "u1", "anon-7")
    assert store.calls == [("acme", ["u1", "anon-7"], 43)]
    assert report.deleted == (("affinities", 0), ("user_activity", 2))
    assert report.erased_before_ms == 43


def test_the_tombstone_reaches_past_the_pipelines_future_skew() -> None:
    """An event accepted just before the erasure may be stamped up to the skew later."""
    store = FakeErasureStore()
    report = UserErasure(store, clock_ms=lambda: 1_000_000).delete_user("acme", "u1", "")
    assert report.erased_before_ms == 1_000_000 + DEFAULT_POLICY.max_future_skew_ms + 1
    assert DEFAULT_POLICY.max_future_skew_ms == 5 * 60_000


def test_one_id_is_required_and_ids_keep_their_limits() -> None:
    erasure = UserErasure(FakeErasureStore())
    with pytest.raises(InvalidArgument) as none_given:
        erasure.delete_user("acme", "", "")
    assert [v.field for v in none_given.value.violations] == ["user_id"]
    with pytest.raises(InvalidArgument) as too_long:
        erasure.delete_user("acme", "u" * 129, "a\x01")
    assert [v.field for v in too_long.value.violations] == ["user_id", "anonymous_id"]
