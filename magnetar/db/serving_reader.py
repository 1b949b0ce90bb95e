"""The state reader the gateway serves from: one transaction per request, plus the catalog.

`PostgresStateReader` runs each read in its own tenant-scoped transaction, which costs a
BEGIN, a `set_config` and a COMMIT around every query: a recommendation makes about seven
reads. `ServingStateReader.request(tenant)` opens one such transaction for the whole
request and its reads run in it, so a recommendation costs its queries plus three round
trips (and the reads see one tenant scope by construction).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from magnetar.db.availability import unavailable_on_failure
from magnetar.db.state_reader import PostgresStateReader
from magnetar.personalization.settings import SignalSettings
from magnetar.serving.personalization import CatalogFact


def open_serving_pool(
    database_url: str,
    *,
    max_size: int = 8,
    timeout_s: float = 2.0,
    statement_timeout_ms: int = 5_000,
) -> ConnectionPool[Any]:
    """A pool that opens in the background: the gateway starts (and answers UNAVAILABLE)
    while PostgreSQL is down, and a request waits at most `timeout_s` for a connection."""
    pool: ConnectionPool[Any] = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        timeout=timeout_s,
        kwargs={
            "connect_timeout": max(1, round(timeout_s)),
            "application_name": "magnetar-serving",
            # A stuck query must not hold a serving thread for long.
            "options": f"-c statement_timeout={statement_timeout_ms}",
        },
        open=False,
    )
    pool.open(wait=False)
    return pool


class ServingStateReader(PostgresStateReader):
    """`PostgresStateReader` whose reads inside `request(tenant)` share one transaction."""

    def __init__(self, pool: ConnectionPool[Any], signals: SignalSettings | None = None) -> None:
        super().__init__(pool, signals)
        # Per request: each request runs on its own thread with its own context.
        self._pinned: ContextVar[tuple[str, psycopg.Connection[Any]] | None] = ContextVar(
            "magnetar_serving_transaction", default=None
        )

    @contextmanager
    def request(self, tenant_id: str) -> Iterator[None]:
        with unavailable_on_failure(), super()._tenant(tenant_id) as conn:
            token = self._pinned.set((tenant_id, conn))
            try:
                yield
            finally:
                self._pinned.reset(token)

    @contextmanager
    def _tenant(self, tenant_id: str) -> Iterator[psycopg.Connection[Any]]:
        pinned = self._pinned.get()
        if pinned is not None and pinned[0] == tenant_id:
            yield pinned[1]
            return
        with unavailable_on_failure(), super()._tenant(tenant_id) as conn:
            yield conn

    def catalog_facts(self, tenant_id: str, item_ids: Sequence[str]) -> Mapping[str, CatalogFact]:
        if not item_ids:
            return {}
        with self._tenant(tenant_id) as conn:
            rows = conn.execute(
                "SELECT item_id, title, categories, available AND deleted_at IS NULL"
                " FROM catalog_items WHERE tenant_id = %s AND item_id = ANY(%s::text[])",
                (tenant_id, list(item_ids)),
            ).fetchall()
        return {
            str(item_id): CatalogFact(str(title), tuple(categories), bool(visible))
            for item_id, title, categories, visible in rows
        }
