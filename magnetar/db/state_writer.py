"""Commit one batch of enriched events into PostgreSQL state, effectively once.

One transaction per batch: only events whose ledger insert is new are folded; the batch's
users' activity rows are locked; each key is written once; the tenant's count advances by the
new events; the changed users are announced on commit (unless ``announce=False``). A
redelivered event changes nothing, and a crash before the commit leaves nothing
(docs/pipeline.md, "Exactly-once counting")."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from magnetar.db.change_stream import notify
from magnetar.db.decay_sql import decayed_sql
from magnetar.db.ledger import COUNT_SQL
from magnetar.personalization.fold import fold_events
from magnetar.personalization.records import EnrichedEvent
from magnetar.personalization.settings import SignalSettings
from magnetar.personalization.state import RecentItem, StateDelta, UserKey, merge_recent


@dataclass(frozen=True)
class BatchOutcome:
    """What a commit did: events newly counted and events the ledger already had.

    `erased` of the newly counted events changed no state: their user was erased after
    they occurred (see `commit_batch`).
    """

    counted: int
    already_counted: int
    erased: int = 0


def _decayed_merge(table: str, half_life_param: str) -> str:
    """SQL for `DecayedScore.merge` of the stored row (`table`) with EXCLUDED."""
    as_of = f"GREATEST({table}.as_of, EXCLUDED.as_of)"
    stored = decayed_sql(f"{table}.score", f"{as_of} - {table}.as_of", half_life_param)
    added = decayed_sql("EXCLUDED.score", f"{as_of} - EXCLUDED.as_of", half_life_param)
    return f"score = {stored} + {added}, as_of = {as_of}"


# committed_at is the insert's own clock (not the transaction's start), the closest a row
# can stamp itself to the commit that makes it visible; times are UTC.
_LEDGER = """
INSERT INTO processed_events (tenant_id, event_id, committed_at, accepted_at)
SELECT %(tenant)s, e.id, clock_timestamp() AT TIME ZONE 'UTC',
       to_timestamp(e.accepted_ms / 1000.0) AT TIME ZONE 'UTC'
FROM unnest(%(ids)s::text[], %(accepted)s::bigint[]) AS e(id, accepted_ms)
ON CONFLICT DO NOTHING
RETURNING event_id
"""

# A batch holds this tenant-wide lock shared, a user erasure (magnetar.db.user_erasure)
# exclusive: the two never overlap, so a batch either commits before the erasure deletes (and
# its rows are deleted too) or reads the erasure's tombstone afterwards. Without it, a batch
# writing a user's first rows while the erasure runs would bring the user back. A rebuild
# (magnetar.db.shadow_state) holds it exclusive for its session while it catches up and
# switches, which is how it holds the tenant's pipeline: no batch commits in between.
ERASURE_LOCK_KEY = "hashtextextended('magnetar.erasure/' || %(tenant)s, 0)"

_BEGIN = (
    "SELECT set_config('magnetar.tenant', %(tenant)s, true),"
    f" pg_advisory_xact_lock_shared({ERASURE_LOCK_KEY})"
)

_ERASED = """
SELECT user_id, erased_before FROM erased_users
WHERE tenant_id = %(tenant)s AND user_id = ANY(%(users)s::text[])
"""

_LOCK_USERS = """
SELECT user_id, recent_items FROM user_activity
WHERE tenant_id = %(tenant)s AND user_id = ANY(%(users)s::text[])
ORDER BY user_id
FOR UPDATE
"""

_USER_ITEMS = f"""
INSERT INTO user_item_signals AS s (tenant_id, user_id, item_id, score, as_of, purchases, last_at)
SELECT %(tenant)s, r.user_id, r.item_id, r.score, r.as_of, r.purchases, r.last_at
FROM jsonb_to_recordset(%(rows)s::jsonb)
  AS r(user_id text, item_id text, score float8, as_of bigint, purchases int, last_at bigint)
ORDER BY r.user_id, r.item_id
ON CONFLICT (tenant_id, user_id, item_id) DO UPDATE SET
  {_decayed_merge("s", "%(half_life)s")},
  purchases = s.purchases + EXCLUDED.purchases,
  last_at = GREATEST(s.last_at, EXCLUDED.last_at)
"""

_USER_CATEGORIES = f"""
INSERT INTO user_category_affinities AS s (tenant_id, user_id, category, score, as_of)
SELECT %(tenant)s, r.user_id, r.category, r.score, r.as_of
FROM jsonb_to_recordset(%(rows)s::jsonb)
  AS r(user_id text, category text, score float8, as_of bigint)
ORDER BY r.user_id, r.category
ON CONFLICT (tenant_id, user_id, category) DO UPDATE SET {_decayed_merge("s", "%(half_life)s")}
"""

_USER_ACTIVITY = """
INSERT INTO user_activity AS s
  (tenant_id, user_id, events, purchases, first_seen, last_seen, recent_items)
SELECT %(tenant)s, r.user_id, r.events, r.purchases, r.first_seen, r.last_seen, r.recent_items
FROM jsonb_to_recordset(%(rows)s::jsonb)
  AS r(user_id text, events bigint, purchases bigint, first_seen bigint, last_seen bigint,
       recent_items jsonb)
ORDER BY r.user_id
ON CONFLICT (tenant_id, user_id) DO UPDATE SET
  events = s.events + EXCLUDED.events,
  purchases = s.purchases + EXCLUDED.purchases,
  first_seen = LEAST(s.first_seen, EXCLUDED.first_seen),
  last_seen = GREATEST(s.last_seen, EXCLUDED.last_seen),
  recent_items = EXCLUDED.recent_items
"""

# `ItemCategories.merge`: the later observation wins, but an empty one never replaces
# categories that are known.
_ITEM_CATEGORIES = """
INSERT INTO item_categories AS s (tenant_id, item_id, categories, as_of)
SELECT %(tenant)s, r.item_id, r.categories, r.as_of
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(item_id text, categories text[], as_of bigint)
ORDER BY r.item_id
ON CONFLICT (tenant_id, item_id) DO UPDATE SET
  categories = EXCLUDED.categories, as_of = EXCLUDED.as_of
WHERE (cardinality(EXCLUDED.categories) > 0, EXCLUDED.as_of)
   >= (cardinality(s.categories) > 0, s.as_of)
"""

_POPULARITY = """
INSERT INTO item_popularity AS s (tenant_id, "window", item_id, score, as_of)
SELECT %(tenant)s, r."window", r.item_id, r.score, r.as_of
FROM jsonb_to_recordset(%(rows)s::jsonb)
  AS r("window" text, item_id text, score float8, as_of bigint)
ORDER BY r."window", r.item_id
ON CONFLICT (tenant_id, "window", item_id) DO UPDATE SET {merge}
"""

_COVISITATION = f"""
INSERT INTO item_covisitation AS s (tenant_id, item_id, other_item_id, score, as_of)
SELECT %(tenant)s, r.item_id, r.other_item_id, r.score, r.as_of
FROM jsonb_to_recordset(%(rows)s::jsonb)
  AS r(item_id text, other_item_id text, score float8, as_of bigint)
ORDER BY r.item_id, r.other_item_id
ON CONFLICT (tenant_id, item_id, other_item_id) DO UPDATE SET
  {_decayed_merge("s", "%(half_life)s")}
"""


def _recent_to_json(items: Sequence[RecentItem]) -> list[list[Any]]:
    return [[r.occurred_at, r.event_id, r.item_id, r.session_id, r.type] for r in items]


def recent_from_json(raw: Sequence[Sequence[Any]]) -> tuple[RecentItem, ...]:
    return tuple(RecentItem(int(a), str(b), str(c), str(d), str(e)) for a, b, c, d, e in raw)


def commit_batch(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    events: Sequence[EnrichedEvent],
    settings: SignalSettings,
    *,
    now_ms: int,
    max_future_skew_ms: int = 5 * 60_000,
    ledger: bool = True,
    accepted_at_ms: Mapping[str, int] | None = None,
    announce: bool = True,
) -> BatchOutcome:
    """Count `events` (all of `tenant_id`) once, in one transaction; see the module doc.

    ``ledger=False`` exists only for the fault suite's control runs (``tests/faults``): the
    ledger is neither consulted nor written, so every redelivery counts again — the failure
    the ledger guards against, shown on purpose. Never turn it off anywhere else.
    `accepted_at_ms` (event id → when the gateway accepted it) is recorded in the ledger.
    `announce=False` leaves the change stream silent (a rebuild's shadow copy).
    """
    if any(e.tenant_id != tenant_id for e in events):
        raise ValueError("a batch holds one tenant's events")
    with conn.transaction():
        conn.execute(_BEGIN, {"tenant": tenant_id})
        ids = sorted({e.event_id for e in events})
        if ledger:
            accepted = accepted_at_ms or {}
            params = {"tenant": tenant_id, "ids": ids, "accepted": [accepted.get(i) for i in ids]}
            new_ids = {row[0] for row in conn.execute(_LEDGER, params)}
        else:
            new_ids = set(ids)
        fresh = [e for e in events if e.event_id in new_ids]
        kept = _not_erased(conn, tenant_id, fresh) if fresh else fresh
        if kept:
            _apply(conn, tenant_id, kept, settings, now_ms + max_future_skew_ms)
            if announce:
                # Delivered on commit only: a gateway that hears it reads the new rows.
                notify(conn, tenant_id, sorted({e.user_id for e in kept}))
        if new_ids:
            # Last, so the counter row is locked only for the commit itself.
            conn.execute(COUNT_SQL, {"tenant": tenant_id, "counted": len(new_ids)})
    return BatchOutcome(
        counted=len(new_ids),
        already_counted=len(ids) - len(new_ids),
        erased=len(fresh) - len(kept),
    )


def _not_erased(
    conn: psycopg.Connection[Any], tenant_id: str, events: list[EnrichedEvent]
) -> list[EnrichedEvent]:
    """`events` without those of erased users that occurred before their erasure.

    They stay in the ledger (a redelivery changes nothing either); events that occurred
    after the erasure count: the user came back.
    """
    users = sorted({e.user_id for e in events})
    erased = dict(conn.execute(_ERASED, {"tenant": tenant_id, "users": users}).fetchall())
    if not erased:
        return events
    return [e for e in events if e.user_id not in erased or e.occurred_at >= erased[e.user_id]]


def _apply(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    events: Sequence[EnrichedEvent],
    settings: SignalSettings,
    not_after_ms: int,
) -> None:
    users = sorted({e.user_id for e in events})
    stored_recent = {
        UserKey(tenant_id, user_id): recent_from_json(raw)
        for user_id, raw in conn.execute(_LOCK_USERS, {"tenant": tenant_id, "users": users})
    }
    delta = fold_events(events, settings, stored_recent, not_after_ms=not_after_ms)
    # Every upsert in one round trip: none reads another's result.
    with conn.pipeline():
        for sql, params in _statements(tenant_id, delta, settings, stored_recent):
            conn.execute(sql, params)


def _statements(
    tenant_id: str,
    delta: StateDelta,
    settings: SignalSettings,
    stored_recent: dict[UserKey, tuple[RecentItem, ...]],
) -> list[tuple[str, dict[str, Any]]]:
    def params(rows: list[dict[str, Any]], half_life: int = 0) -> dict[str, Any]:
        return {"tenant": tenant_id, "rows": json.dumps(rows), "half_life": half_life}

    statements: list[tuple[str, dict[str, Any]]] = []
    if delta.user_items:
        rows = [
            {
                "user_id": k.user_id,
                "item_id": k.item_id,
                "score": v.score.value,
                "as_of": v.score.as_of,
                "purchases": v.purchases,
                "last_at": v.last_at,
            }
            for k, v in delta.user_items.items()
        ]
        statements.append((_USER_ITEMS, params(rows, settings.affinity_half_life_ms)))
    if delta.user_categories:
        rows = [
            {"user_id": k.user_id, "category": k.category, "score": v.value, "as_of": v.as_of}
            for k, v in delta.user_categories.items()
        ]
        statements.append((_USER_CATEGORIES, params(rows, settings.affinity_half_life_ms)))
    if delta.user_activity:
        rows = []
        for key, activity in delta.user_activity.items():
            recent = merge_recent(
                stored_recent.get(key, ()),
                delta.recent_items.get(key, ()),
                settings.recent_items_limit,
            )
            rows.append(
                {
                    "user_id": key.user_id,
                    "events": activity.events,
                    "purchases": activity.purchases,
                    "first_seen": activity.first_seen,
                    "last_seen": activity.last_seen,
                    "recent_items": _recent_to_json(recent),
                }
            )
        statements.append((_USER_ACTIVITY, params(rows)))
    if delta.item_categories:
        rows = [
            {"item_id": k.item_id, "categories": list(v.categories), "as_of": v.as_of}
            for k, v in delta.item_categories.items()
        ]
        statements.append((_ITEM_CATEGORIES, params(rows)))
    for window, half_life in settings.trending_windows:
        rows = [
            {"window": k.window, "item_id": k.item_id, "score": v.value, "as_of": v.as_of}
            for k, v in delta.item_popularity.items()
            if k.window == window
        ]
        if rows:
            sql = _POPULARITY.format(merge=_decayed_merge("s", "%(half_life)s"))
            statements.append((sql, params(rows, half_life)))
    if delta.covisitation:
        rows = [
            {
                "item_id": k.item_id,
                "other_item_id": k.other_item_id,
                "score": v.value,
                "as_of": v.as_of,
            }
            for k, v in delta.covisitation.items()
        ]
        statements.append((_COVISITATION, params(rows, settings.covisitation_half_life_ms)))
    return statements
