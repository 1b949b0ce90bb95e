from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from magnetar.personalization.decay import (
    DAY_MS,
    HOUR_MS,
    MAX_HALF_LIVES,
    NEGLIGIBLE_SCORE,
    DecayedScore,
    decay_factor,
    decayed,
)

H = 7 * DAY_MS

contributions = st.lists(
    st.tuples(
        st.floats(min_value=-100, max_value=100, allow_nan=False),
        st.integers(min_value=0, max_value=60 * DAY_MS),
    ),
    min_size=1,
    max_size=30,
)


def _fold(items: list[tuple[float, int]]) -> DecayedScore:
    score = DecayedScore(items[0][0], items[0][1])
    for amount, at in items[1:]:
        score = score.add(amount, at, H)
    return score


def _closed_form(items: list[tuple[float, int]], now: int) -> float:
    return sum(amount * 2 ** (-(now - at) / H) for amount, at in items)


def test_a_score_halves_after_one_half_life() -> None:
    assert DecayedScore(8.0, 0).at(H, H) == pytest.approx(4.0)
    assert DecayedScore(8.0, 0).at(3 * H, H) == pytest.approx(1.0)


def test_reading_before_the_scores_instant_never_inflates_it() -> None:
    assert DecayedScore(8.0, 10 * DAY_MS).at(0, H) == 8.0


def test_a_non_positive_half_life_is_rejected() -> None:
    with pytest.raises(ValueError):
        decay_factor(10, 0)


def test_a_late_contribution_is_decayed_to_the_scores_instant() -> None:
    score = DecayedScore(1.0, 2 * H).add(4.0, H, H)
    assert score.as_of == 2 * H
    assert score.value == pytest.approx(1.0 + 2.0)


@given(contributions)
def test_a_score_equals_the_closed_form_sum_of_decayed_contributions(
    items: list[tuple[float, int]],
) -> None:
    now = 61 * DAY_MS
    assert _fold(items).at(now, H) == pytest.approx(_closed_form(items, now), abs=1e-6)


@given(contributions, contributions)
def test_folding_two_batches_equals_folding_one(
    first: list[tuple[float, int]], second: list[tuple[float, int]]
) -> None:
    separately = _fold(first).merge(_fold(second), H)
    together = _fold(first + second)
    assert separately.as_of == together.as_of
    assert math.isclose(separately.value, together.value, rel_tol=1e-9, abs_tol=1e-6)


@given(contributions, contributions)
def test_merge_is_commutative(a: list[tuple[float, int]], b: list[tuple[float, int]]) -> None:
    left, right = _fold(a), _fold(b)
    ab, ba = left.merge(right, H), right.merge(left, H)
    assert ab.as_of == ba.as_of
    assert math.isclose(ab.value, ba.value, rel_tol=1e-9, abs_tol=1e-9)


@given(contributions, contributions, contributions)
def test_merge_is_associative(
    a: list[tuple[float, int]], b: list[tuple[float, int]], c: list[tuple[float, int]]
) -> None:
    x, y, z = _fold(a), _fold(b), _fold(c)
    left, right = x.merge(y, H).merge(z, H), x.merge(y.merge(z, H), H)
    assert left.as_of == right.as_of
    assert math.isclose(left.value, right.value, rel_tol=1e-9, abs_tol=1e-6)


def test_beyond_the_cut_off_a_score_is_gone_and_before_it_is_not() -> None:
    # PostgreSQL cannot represent what a plain 2 ** -x gives past ~1,075 half-lives: the
    # Python decay stops at the same cut-off as the SQL one.
    assert decay_factor(MAX_HALF_LIVES * HOUR_MS, HOUR_MS) == 0.0
    assert decay_factor(60 * DAY_MS, HOUR_MS) == 0.0
    assert decay_factor((MAX_HALF_LIVES - 1) * HOUR_MS, HOUR_MS) == 2.0 ** -(MAX_HALF_LIVES - 1)
    assert DecayedScore(5.0, 0).at(60 * DAY_MS, HOUR_MS) == 0.0
    assert DecayedScore(5.0, 0).merge(DecayedScore(1.0, 60 * DAY_MS), HOUR_MS) == DecayedScore(
        1.0, 60 * DAY_MS
    )


def test_a_negligible_score_reads_as_zero() -> None:
    assert decayed(NEGLIGIBLE_SCORE / 2, 0, HOUR_MS) == 0.0
    assert decayed(-NEGLIGIBLE_SCORE / 2, HOUR_MS, HOUR_MS) == 0.0
    assert decayed(1e-15, HOUR_MS, HOUR_MS) == 0.5e-15
