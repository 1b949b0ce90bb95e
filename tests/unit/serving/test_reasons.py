"""The core's sentences become structured reasons; related items are named by title."""

from __future__ import annotations

import pytest

from magnetar.personalization.recommend import (
    CATEGORY,
    COVISITATION,
    REPEAT,
    TRENDING,
    Recommendation,
)
from magnetar.serving.reasons import Reason, ReasonKind, reason_of, served, titled


@pytest.mark.parametrize(
    ("strategy", "text", "expected"),
    [
        (COVISITATION, "bought together with tent", Reason(ReasonKind.CO_VISITATION, "tent")),
        (COVISITATION, "viewed with tent", Reason(ReasonKind.CO_VISITATION, "tent")),
        (COVISITATION, "viewed or bought with tent", Reason(ReasonKind.CO_VISITATION, "tent")),
        (REPEAT, "you bought this before", Reason(ReasonKind.REPEAT_AFFINITY)),
        (CATEGORY, "popular in outdoor", Reason(ReasonKind.CATEGORY_AFFINITY, category="outdoor")),
        (TRENDING, "trending", Reason(ReasonKind.TRENDING)),
        (TRENDING, "trending in outdoor", Reason(ReasonKind.TRENDING)),
    ],
)
def test_each_core_reason_maps_to_its_kind_and_fields(
    strategy: str, text: str, expected: Reason
) -> None:
    reason = reason_of(Recommendation("x", 1.0, text, strategy))
    assert (reason.kind, reason.related_item_id, reason.category) == (
        expected.kind,
        expected.related_item_id,
        expected.category,
    )
    assert reason.text == text


def test_the_related_item_is_named_by_its_title_when_the_catalog_has_one() -> None:
    item = served(Recommendation("bag", 1.0, "bought together with tent", COVISITATION))
    assert titled(item, {"tent": "Dome Tent"}).reason.text == "bought together with Dome Tent"
    assert titled(item, {}).reason.text == "bought together with tent"
    assert titled(item, {"tent": "Dome Tent"}).reason.related_item_id == "tent"
