"""Lazily decayed scores: a value stored with the instant it was last brought up to date.

Reading decays the value to `now`; merging brings both sides to the later instant and adds
them, so folding batches one after the other gives the same score as folding them as one (up
to float rounding). `magnetar.db.decay_sql` computes the same merge in SQL
(docs/architecture.md, "State and serving model")."""

from __future__ import annotations

from typing import NamedTuple

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# Beyond this many half-lives a score counts as gone (2 ** -1000 is about 1e-301). PostgreSQL
# raises "value out of range: underflow" where a float8 result rounds to zero, so the SQL
# decay (`magnetar.db.decay_sql`) must never compute one; Python agrees with it exactly.
MAX_HALF_LIVES = 1_000
# A magnitude below which a score counts as zero: the smallest value whose product with
# 2 ** -MAX_HALF_LIVES is still a non-zero float8 is about 3e-23.
NEGLIGIBLE_SCORE = 1e-20


def decay_factor(elapsed_ms: int, half_life_ms: int) -> float:
    """How much of a score survives `elapsed_ms`; never more than all of it.

    A negative elapsed time (a read or a contribution stamped before the score's instant, from
    clock skew) is treated as zero: decay only ever shrinks a score, so a skewed clock cannot
    inflate one.
    """
    if half_life_ms <= 0:
        raise ValueError(f"half-life must be positive, got {half_life_ms} ms")
    if elapsed_ms <= 0:
        return 1.0
    half_lives = elapsed_ms / half_life_ms
    # pow(2, -x), as PostgreSQL's power() computes it: the SQL and Python figures agree to the
    # last bit (exp2 may differ in the last place).
    return 0.0 if half_lives >= MAX_HALF_LIVES else float(2.0**-half_lives)


def decayed(value: float, elapsed_ms: int, half_life_ms: int) -> float:
    """`value` after `elapsed_ms`, zero beyond MAX_HALF_LIVES or below NEGLIGIBLE_SCORE:
    the same figure as the SQL of `magnetar.db.decay_sql.decayed_sql`."""
    if abs(value) < NEGLIGIBLE_SCORE:
        return 0.0
    return value * decay_factor(elapsed_ms, half_life_ms)


class DecayedScore(NamedTuple):
    """A score's value as of `as_of` (epoch ms); decays with a half-life given on use.

    The half-life is not stored with the score: it is a per-tenant setting, and both the
    writer and the reader of a signal use the tenant's setting for that signal. (A named
    tuple rather than a dataclass: state holds millions of these and tuples are cheaper.)
    """

    value: float
    as_of: int

    def at(self, now_ms: int, half_life_ms: int) -> float:
        """The value decayed to `now_ms` (undecayed if `now_ms` is not after `as_of`)."""
        return decayed(self.value, now_ms - self.as_of, half_life_ms)

    def merge(self, other: DecayedScore, half_life_ms: int) -> DecayedScore:
        """The sum of two scores, expressed as of the later of their instants."""
        as_of = max(self.as_of, other.as_of)
        value = decayed(self.value, as_of - self.as_of, half_life_ms) + decayed(
            other.value, as_of - other.as_of, half_life_ms
        )
        return DecayedScore(value, as_of)

    def add(self, amount: float, at_ms: int, half_life_ms: int) -> DecayedScore:
        """This score with a contribution of `amount` made at `at_ms`."""
        return self.merge(DecayedScore(amount, at_ms), half_life_ms)


def merge_optional(
    existing: DecayedScore | None, delta: DecayedScore, half_life_ms: int
) -> DecayedScore:
    """Apply `delta` to a score that may not exist yet (the upsert of one key)."""
    return delta if existing is None else existing.merge(delta, half_life_ms)
