"""Erasure names who to erase and reports what went, per table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

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
    report = UserErasure(store, clock_ms=lambda: 42).delete_user("acme", "u1", "anon-7")
    assert store.calls == [("acme", ["u1", "anon-7"], 42)]
    assert report.deleted == (("affinities", 0), ("user_activity", 2))
    assert report.erased_before_ms == 42


def test_one_id_is_required_and_ids_keep_their_limits() -> None:
    erasure = UserErasure(FakeErasureStore())
    with pytest.raises(InvalidArgument) as none_given:
        erasure.delete_user("acme", "", "")
    assert [v.field for v in none_given.value.violations] == ["user_id"]
    with pytest.raises(InvalidArgument) as too_long:
        erasure.delete_user("acme", "u" * 129, "a\x01")
    assert [v.field for v in too_long.value.violations] == ["user_id", "anonymous_id"]
