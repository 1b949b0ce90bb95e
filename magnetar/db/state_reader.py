"""`StateReader` over PostgreSQL: the serving side of the state the materializer writes.

Each call runs in its own short transaction scoped to one tenant (row-level security), reads
only the rows it needs through the leading ``tenant_id`` of every key, and decays scores to
``now_ms`` in SQL with the tenant's half-lives — the same arithmetic as
`DecayedScore.at`. Ties rank by ascending id, as in the in-memory reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from magnetar.db.decay_sql import decayed_sql
from magnetar.db.state_writer import recent_from_json
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import (
    RecentItem,
    ScoredCategory,
    ScoredItem,
    UserActivity,
    distinct_items,
)


def _decayed(h_param: str, alias: str = "") -> str:
    column = f"{alias}." if alias else ""
    return decayed_sql(f"{column}score", f"%(now)s - {column}as_of", h_param)


class PostgresStateReader:
    """Reads one tenant's state per call; `signals` gives each tenant's half-lives."""

    def __init__(self, pool: ConnectionPool[Any], signals: SignalSettings | None = None) -> None:
        self._pool = pool
        self._signals = signals or SignalSettings()

    def signals(self, tenant_id: str) -> SignalSettings:
        return self._signals

    @contextmanager
    def _tenant(self, tenant_id: str) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant_id,))
            yield conn

    def _top(self, tenant_id: str, sql: str, params: dict[str, Any]) -> list[tuple[str, float]]:
        with self._tenant(tenant_id) as conn:
            rows = conn.execute(sql, {"tenant": tenant_id, **params}).fetchall()
        return [(str(key), float(value)) for key, value in rows if value > 0]

    def recent_items(self, tenant_id: str, user_id: str, limit: int) -> Sequence[RecentItem]:
        with self._tenant(tenant_id) as conn:
            row = conn.execute(
                "SELECT recent_items FROM user_activity WHERE tenant_id = %s AND user_id = %s",
                (tenant_id, user_id),
            ).fetchone()
        return distinct_items(recent_from_json(row[0]), limit) if row else ()

    def user_item_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        sql = (
            f"SELECT item_id, {_decayed('%(h)s')} AS s FROM user_item_signals"
            " WHERE tenant_id = %(tenant)s AND user_id = %(user)s"
            " ORDER BY s DESC, item_id LIMIT %(limit)s"
        )
        params = {
            "user": user_id,
            "now": now_ms,
            "limit": limit,
            "h": self.signals(tenant_id).affinity_half_life_ms,
        }
        return [ScoredItem(*pair) for pair in self._top(tenant_id, sql, params)]

    def user_category_affinities(
        self, tenant_id: str, user_id: str, now_ms: int, limit: int
    ) -> Sequence[ScoredCategory]:
        sql = (
            f"SELECT category, {_decayed('%(h)s')} AS s FROM user_category_affinities"
            " WHERE tenant_id = %(tenant)s AND user_id = %(user)s"
            " ORDER BY s DESC, category LIMIT %(limit)s"
        )
        params = {
            "user": user_id,
            "now": now_ms,
            "limit": limit,
            "h": self.signals(tenant_id).affinity_half_life_ms,
        }
        return [ScoredCategory(*pair) for pair in self._top(tenant_id, sql, params)]

    def purchased_items(self, tenant_id: str, user_id: str) -> frozenset[str]:
        with self._tenant(tenant_id) as conn:
            rows = conn.execute(
                "SELECT item_id FROM user_item_signals"
                " WHERE tenant_id = %s AND user_id = %s AND purchases > 0",
                (tenant_id, user_id),
            ).fetchall()
        return frozenset(str(r[0]) for r in rows)

    def user_activity(self, tenant_id: str, user_id: str) -> UserActivity | None:
        with self._tenant(tenant_id) as conn:
            row = conn.execute(
                "SELECT events, purchases, first_seen, last_seen FROM user_activity"
                " WHERE tenant_id = %s AND user_id = %s",
                (tenant_id, user_id),
            ).fetchone()
        return UserActivity(*(int(v) for v in row)) if row else None

    def neighbours(
        self, tenant_id: str, item_ids: Sequence[str], now_ms: int, limit_per_item: int
    ) -> Mapping[str, Sequence[ScoredItem]]:
        if not item_ids:
            return {}
        # One query for all seeds: rank within each seed, keep the top of each.
        sql = (
            "SELECT item_id, other_item_id, s FROM ("
            f"  SELECT item_id, other_item_id, {_decayed('%(h)s')} AS s,"
            f"    row_number() OVER (PARTITION BY item_id"
            f"      ORDER BY {_decayed('%(h)s')} DESC, other_item_id) AS rank"
            "  FROM item_covisitation"
            "  WHERE tenant_id = %(tenant)s AND item_id = ANY(%(items)s::text[])"
            ") ranked WHERE rank <= %(limit)s AND s > 0 ORDER BY item_id, rank"
        )
        params = {
            "tenant": tenant_id,
            "items": list(dict.fromkeys(item_ids)),
            "now": now_ms,
            "limit": limit_per_item,
            "h": self.signals(tenant_id).covisitation_half_life_ms,
        }
        found: dict[str, list[ScoredItem]] = {}
        with self._tenant(tenant_id) as conn:
            for item_id, other, score in conn.execute(sql, params):
                found.setdefault(str(item_id), []).append(ScoredItem(str(other), float(score)))
        return found

    def trending(
        self, tenant_id: str, window: str, now_ms: int, limit: int
    ) -> Sequence[ScoredItem]:
        h = self.signals(tenant_id).window_half_life_ms(window)
        sql = (
            f"SELECT item_id, {_decayed('%(h)s')} AS s FROM item_popularity"
            ' WHERE tenant_id = %(tenant)s AND "window" = %(window)s'
            " ORDER BY s DESC, item_id LIMIT %(limit)s"
        )
        params = {"window": window, "now": now_ms, "limit": limit, "h": h}
        return [ScoredItem(*pair) for pair in self._top(tenant_id, sql, params)]

    def trending_in_categories(
        self,
        tenant_id: str,
        window: str,
        categories: Sequence[str],
        now_ms: int,
        limit_per_category: int,
    ) -> Mapping[str, Sequence[ScoredItem]]:
        h = self.signals(tenant_id).window_half_life_ms(window)
        wanted = list(dict.fromkeys(categories))
        sql = (
            "SELECT category, item_id, s FROM ("
            "  SELECT c.category, p.item_id, "
            f"    {_decayed('%(h)s', 'p')} AS s,"
            "    row_number() OVER (PARTITION BY c.category"
            f"      ORDER BY {_decayed('%(h)s', 'p')} DESC, p.item_id) AS rank"
            "  FROM item_popularity p"
            "  JOIN item_categories i ON i.tenant_id = p.tenant_id AND i.item_id = p.item_id"
            "  CROSS JOIN LATERAL unnest(i.categories) AS c(category)"
            '  WHERE p.tenant_id = %(tenant)s AND p."window" = %(window)s'
            "    AND c.category = ANY(%(categories)s::text[])"
            ") ranked WHERE rank <= %(limit)s AND s > 0 ORDER BY category, rank"
        )
        params = {
            "tenant": tenant_id,
            "window": window,
            "categories": wanted,
            "now": now_ms,
            "limit": limit_per_category,
            "h": h,
        }
        found: dict[str, list[ScoredItem]] = {category: [] for category in wanted}
        with self._tenant(tenant_id) as conn:
            for category, item_id, score in conn.execute(sql, params):
                found[str(category)].append(ScoredItem(str(item_id), float(score)))
        return found

    def item_categories(
        self, tenant_id: str, item_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, ...]]:
        with self._tenant(tenant_id) as conn:
            rows = conn.execute(
                "SELECT item_id, categories FROM item_categories"
                " WHERE tenant_id = %s AND item_id = ANY(%s::text[])",
                (tenant_id, list(item_ids)),
            ).fetchall()
        return {str(item_id): tuple(cats) for item_id, cats in rows}
