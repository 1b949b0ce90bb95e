"""How many events a tenant's pipeline has counted, for an import's progress.

Reads the ledger's per-tenant counter (`magnetar.db.ledger.counted_events`: exact, never
lowered by ledger expiry) through the gateway's application-role sessions, in a worker
thread. A failure is logged and answered with None: progress is a courtesy, and an import
must not stop because PostgreSQL could not be asked how far the pipeline has got.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import psycopg
from sqlalchemy.orm import Session, sessionmaker

from magnetar.db.ledger import counted_events

log = logging.getLogger(__name__)


class LedgerCounter:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _read(self, tenant_id: str) -> int:
        with self._sessions() as session:
            raw = session.connection().connection.driver_connection
            return counted_events(cast(psycopg.Connection[Any], raw), tenant_id)

    async def counted(self, tenant_id: str) -> int | None:
        try:
            return await asyncio.to_thread(self._read, tenant_id)
        except Exception:
            log.warning("cannot read the counted events of %s", tenant_id, exc_info=True)
            return None
