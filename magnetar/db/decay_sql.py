"""The decay of a stored score in SQL, safe from float8 underflow.

PostgreSQL raises ``value out of range: underflow`` where a float8 ``power`` or product rounds
to zero, so a plain ``score * power(2, -age / h)`` fails once a row is about 1,075 half-lives
old — and with it every batch that touches the row and every read that ranks it. The
fragment here is zero beyond `MAX_HALF_LIVES` half-lives or for a negligible score, and
computes the same figure as `magnetar.personalization.decay.decayed` otherwise.
"""

from __future__ import annotations

from magnetar.personalization.decay import MAX_HALF_LIVES, NEGLIGIBLE_SCORE


def decayed_sql(score: str, elapsed: str, half_life: str) -> str:
    """SQL for `score` decayed over `elapsed` ms (never negative) with half-life `half_life`;
    each argument is an SQL expression."""
    half_lives = f"(GREATEST(0, {elapsed})::float8 / {half_life})"
    return (
        f"(CASE WHEN {half_lives} >= {MAX_HALF_LIVES} OR abs({score}) < {NEGLIGIBLE_SCORE!r}"
        f" THEN 0.0::float8 ELSE {score} * power(2.0::float8, -{half_lives}) END)"
    )
