"""One user's rows, read in one round trip, answering the reader's four per-user questions.

A recommendation asks the state four things about its user: recent items, item
affinities, category affinities, purchases. `PostgresStateReader` asks each in a query of
its own; here the user's rows of the three user tables are read together (pipelined with
the transaction's start when it is the first read) and the four answers computed from them,
with the same arithmetic and order as the reader's SQL: score decayed as
``score * 2 ** (-max(0, now - as_of) / h)``, positive scores only, best first, ties by
ascending id in code-point order.

A user with more item rows than `MAX_ITEM_ROWS` is left to the per-question queries, which
rank and cut in PostgreSQL instead of shipping every row here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from magnetar.db.state_writer import recent_from_json
from magnetar.personalization.decay import decayed
from magnetar.personalization.state import (
    RecentItem,
    ScoredCategory,
    ScoredItem,
    UserActivity,
    distinct_items,
)

MAX_ITEM_ROWS = 2_000

ITEMS = f"""
SELECT item_id, score, as_of, purchases FROM user_item_signals
WHERE tenant_id = %(tenant)s AND user_id = %(user)s
LIMIT {MAX_ITEM_ROWS + 1}
"""
CATEGORIES = """
SELECT category, score, as_of FROM user_category_affinities
WHERE tenant_id = %(tenant)s AND user_id = %(user)s
"""
ACTIVITY = """
SELECT events, purchases, first_seen, last_seen, recent_items FROM user_activity
WHERE tenant_id = %(tenant)s AND user_id = %(user)s
"""

# The same rows for many users at once, each row led by its user id.
ITEMS_OF_USERS = f"""
SELECT u.user_id, s.item_id, s.score, s.as_of, s.purchases
FROM unnest(%(users)s::text[]) AS u(user_id)
CROSS JOIN LATERAL (
  SELECT item_id, score, as_of, purchases FROM user_item_signals
  WHERE tenant_id = %(tenant)s AND user_id = u.user_id
  LIMIT {MAX_ITEM_ROWS + 1}
) s
"""
CATEGORIES_OF_USERS = """
SELECT user_id, category, score, as_of FROM user_category_affinities
WHERE tenant_id = %(tenant)s AND user_id = ANY(%(users)s::text[])
"""
ACTIVITY_OF_USERS = """
SELECT user_id, events, purchases, first_seen, last_seen, recent_items FROM user_activity
WHERE tenant_id = %(tenant)s AND user_id = ANY(%(users)s::text[])
"""


def _decayed(score: float, as_of: int, now_ms: int, half_life_ms: int) -> float:
    # As PostgreSQL computes it in the reader (magnetar.db.decay_sql).
    return decayed(float(score), now_ms - as_of, half_life_ms)


def _top(rows: Sequence[tuple[str, float]], limit: int) -> list[tuple[str, float]]:
    positive = [(key, score) for key, score in rows if score > 0]
    return sorted(positive, key=lambda pair: (-pair[1], pair[0]))[:limit]


@dataclass(frozen=True, slots=True)
class UserRows:
    items: tuple[tuple[str, float, int, int], ...]
    categories: tuple[tuple[str, float, int], ...]
    activity: UserActivity | None
    recent: tuple[RecentItem, ...]
    # More item rows than MAX_ITEM_ROWS: item answers come from the per-question queries.
    items_complete: bool

    @classmethod
    def from_cursors(cls, items: Any, categories: Any, activity: Any) -> UserRows:
        return cls.from_rows(items.fetchall(), categories.fetchall(), activity.fetchone())

    @classmethod
    def from_rows(
        cls,
        items: Sequence[Sequence[Any]],
        categories: Sequence[Sequence[Any]],
        activity: Sequence[Any] | None,
    ) -> UserRows:
        """From the rows of `ITEMS`, `CATEGORIES` and `ACTIVITY` (None: no activity row), as
        psycopg returns them: tuples already of the columns' types (text, double precision,
        bigint, integer: str, float, int), kept as they are."""
        return cls(
            items=tuple(items[:MAX_ITEM_ROWS]),  # type: ignore[arg-type]
            categories=tuple(categories),  # type: ignore[arg-type]
            activity=UserActivity(*activity[:4]) if activity else None,
            recent=recent_from_json(activity[4]) if activity else (),
            items_complete=len(items) <= MAX_ITEM_ROWS,
        )

    def recent_items(self, limit: int) -> Sequence[RecentItem]:
        return distinct_items(self.recent, limit)

    def item_affinities(self, now_ms: int, half_life_ms: int, limit: int) -> list[ScoredItem]:
        decayed = [(i, _decayed(s, a, now_ms, half_life_ms)) for i, s, a, _ in self.items]
        return [ScoredItem(*pair) for pair in _top(decayed, limit)]

    def category_affinities(
        self, now_ms: int, half_life_ms: int, limit: int
    ) -> list[ScoredCategory]:
        decayed = [(c, _decayed(s, a, now_ms, half_life_ms)) for c, s, a in self.categories]
        return [ScoredCategory(*pair) for pair in _top(decayed, limit)]

    def purchased(self) -> frozenset[str]:
        return frozenset(item for item, _, _, purchases in self.items if purchases > 0)


def read_user(
    conn: psycopg.Connection[Any], tenant_id: str, user_id: str, begin: Sequence[Any]
) -> UserRows:
    """The user's rows in one round trip; `begin` are (sql, params) statements to send
    first in the same pipeline (the transaction's start, when not yet sent)."""
    items, categories, activity = _pipelined(
        conn, begin, (ITEMS, CATEGORIES, ACTIVITY), {"tenant": tenant_id, "user": user_id}
    )
    return UserRows.from_cursors(items, categories, activity)


def _pipelined(
    conn: psycopg.Connection[Any],
    begin: Sequence[Any],
    reads: Sequence[str],
    params: dict[str, Any],
) -> list[psycopg.Cursor[Any]]:
    """`begin`'s statements, then each of `reads` with `params`, in one round trip."""
    with conn.pipeline():
        for statement, statement_params in begin:
            conn.execute(statement, statement_params)
        return [conn.execute(read, params) for read in reads]


def _by_user(rows: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows led by a user id, grouped by it, without it."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row[1:])
    return grouped


def read_users(
    conn: psycopg.Connection[Any], tenant_id: str, user_ids: Sequence[str], begin: Sequence[Any]
) -> dict[str, UserRows]:
    """Each user's rows, as `read_user` gives them, for many users in one round trip; a
    user without state gets empty rows, as from `read_user`."""
    items, categories, activity = _pipelined(
        conn,
        begin,
        (ITEMS_OF_USERS, CATEGORIES_OF_USERS, ACTIVITY_OF_USERS),
        {"tenant": tenant_id, "users": list(user_ids)},
    )
    items_of, categories_of = _by_user(items.fetchall()), _by_user(categories.fetchall())
    activity_of = {row[0]: row[1:] for row in activity.fetchall()}
    return {
        user_id: UserRows.from_rows(
            items_of.get(user_id, ()), categories_of.get(user_id, ()), activity_of.get(user_id)
        )
        for user_id in user_ids
    }
