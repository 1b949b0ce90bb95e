"""`ErasureStore` over PostgreSQL: delete a user's rows everywhere, leave a tombstone.

"Everywhere" is every table of the schema with a ``user_id`` column, found in the models'
metadata, so a user-keyed table added later is erased without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Table, delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

import magnetar.db.state_models  # noqa: F401  (registers the state tables in the metadata)
from magnetar.db.availability import unavailable_on_failure
from magnetar.db.catalog_models import ErasedUserRow
from magnetar.db.change_stream import CHANNEL, payloads
from magnetar.db.engine import tenant_transaction
from magnetar.db.models import Base
from magnetar.db.state_writer import ERASURE_LOCK_KEY

# Waiting longer for batches in progress means something is wrong: give up, delete nothing.
LOCK_TIMEOUT = "5s"


def user_tables() -> list[Table]:
    """Every tenant-scoped table keyed by user, except the tombstones themselves."""
    return [
        table
        for table in Base.metadata.sorted_tables
        if "user_id" in table.c
        and "tenant_id" in table.c
        and table.name != ErasedUserRow.__tablename__
    ]


class PostgresErasureStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def erase(
        self, tenant_id: str, subjects: Sequence[str], erased_before_ms: int
    ) -> Mapping[str, int]:
        tombstones = insert(ErasedUserRow).values(
            [
                {"tenant_id": tenant_id, "user_id": subject, "erased_before": erased_before_ms}
                for subject in sorted(subjects)
            ]
        )
        tombstones = tombstones.on_conflict_do_update(
            index_elements=[ErasedUserRow.tenant_id, ErasedUserRow.user_id],
            set_={
                "erased_before": func.greatest(
                    ErasedUserRow.erased_before, tombstones.excluded.erased_before
                ),
                "erased_at": func.now(),
            },
        )
        deleted: dict[str, int] = {}
        with unavailable_on_failure(), tenant_transaction(self._sessions, tenant_id) as session:
            connection = session.connection()
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            # Waits for the tenant's batches in progress and holds new ones back until the
            # commit (see magnetar.db.state_writer): none can write the user concurrently.
            connection.exec_driver_sql(
                f"SELECT pg_advisory_xact_lock({ERASURE_LOCK_KEY})", {"tenant": tenant_id}
            )
            session.execute(tombstones)
            for table in user_tables():
                result = session.execute(
                    delete(table).where(
                        table.c.tenant_id == tenant_id, table.c.user_id.in_(list(subjects))
                    )
                )
                deleted[table.name] = int(getattr(result, "rowcount", 0))
            # Every gateway drops the users from memory when this commits.
            for payload in payloads(tenant_id, subjects):
                connection.exec_driver_sql(
                    "SELECT pg_notify(%(channel)s, %(payload)s)",
                    {"channel": CHANNEL, "payload": payload},
                )
        return deleted
