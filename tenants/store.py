"""`TenantStore` in PostgreSQL, as the application role.

A step's status is one atomic update of the `tenants` row. The lease is a session-level
advisory lock on a connection of its own, released by PostgreSQL if its holder dies.
Purging runs in the tenant's row-level-security scope over every table with a `tenant_id`
column, found in the catalog (docs/tenants.md, "Offboarding").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import Scope
from magnetar.db.engine import tenant_transaction
from magnetar.db.models import ApiKey, ProducerToken, Tenant
from magnetar.errors import Unavailable
from tenants.model import (
    ONBOARDING_STEPS,
    IngestQuota,
    StepState,
    StepStatus,
    TenantRecord,
    TenantSpec,
    TenantState,
)
from tenants.plans import QUOTA_FIELDS, Quotas
from tenants.ports import LeaseTaken, PendingKey

log = logging.getLogger(__name__)

# First half of the two-integer advisory lock key: "magn", so our locks never meet others'.
LOCK_CLASS = 0x6D61676E
UTC_NOW = "timezone('UTC', now())"

_TENANT_TABLES = text(
    """
    SELECT c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relname <> 'tenants'
    ORDER BY c.relname
    """
)
_FOREIGN_KEYS = text(
    """
    SELECT src.relname, dst.relname FROM pg_constraint k
    JOIN pg_class src ON src.oid = k.conrelid JOIN pg_class dst ON dst.oid = k.confrelid
    JOIN pg_namespace n ON n.oid = src.relnamespace
    WHERE k.contype = 'f' AND n.nspname = current_schema()
    """
)


def tenant_tables(connection: Connection | Session) -> list[str]:
    """Tenant-scoped tables, each before any table it references (safe deletion order)."""
    names: list[Any] = list(connection.execute(_TENANT_TABLES).scalars())
    tables = [str(name) for name in names]
    references: dict[str, set[str]] = {table: set() for table in tables}
    for source, target in connection.execute(_FOREIGN_KEYS).all():
        if source in references and target in references and source != target:
            references[source].add(target)
    ordered: list[str] = []

    def place(table: str) -> None:
        if table in ordered:
            return
        # Tables that reference `table` go first.
        for other in tables:
            if table in references[other]:
                place(other)
        ordered.append(table)

    for table in tables:
        place(table)
    return ordered


def _step_statuses(steps: dict[str, Any]) -> tuple[StepStatus, ...]:
    statuses = []
    for name in ONBOARDING_STEPS:
        entry = steps.get(name) or {}
        updated = entry.get("updated_at")
        statuses.append(
            StepStatus(
                name,
                StepState(entry.get("state", StepState.PENDING)),
                str(entry.get("message", "")),
                datetime.fromisoformat(updated) if updated else None,
            )
        )
    return tuple(statuses)


def _record(row: Tenant) -> TenantRecord:
    quotas = Quotas.from_dict(row.quotas) if set(QUOTA_FIELDS) <= set(row.quotas) else None
    return TenantRecord(
        spec=TenantSpec(
            row.tenant_id, row.display_name, row.plan, quotas, tuple(row.allowed_origins or ())
        ),
        state=TenantState(row.state),
        steps=_step_statuses(row.steps),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _unavailable(error: Exception) -> Unavailable:
    """The caller learns the kind of failure; the database's own text (host names, role
    names, SQL) goes to the log only."""
    log.warning("PostgreSQL is unavailable: %s", error)
    return Unavailable(
        f"PostgreSQL is unavailable: {type(error).__name__}", reason="DATABASE_UNAVAILABLE"
    )


class PostgresTenantStore:
    def __init__(self, sessions: sessionmaker[Session], *, lock_poll_s: float = 0.2) -> None:
        self._sessions = sessions
        with sessions() as session:
            bind = session.get_bind()
        assert isinstance(bind, Engine)
        self._engine = bind
        self._lock_poll_s = lock_poll_s

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as error:
            raise _unavailable(error) from error

    # -- lease ------------------------------------------------------------------------

    def _try_lock(self, connection: Connection, tenant_id: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            taken: bool = connection.execute(
                text("SELECT pg_try_advisory_lock(:c, hashtext(:t))"),
                {"c": LOCK_CLASS, "t": tenant_id},
            ).scalar_one()
            # Commit at once: the lock belongs to the session, so the transaction need not
            # stay open (idle in transaction) while onboarding talks to Pulsar.
            connection.commit()
            if taken:
                return
            if time.monotonic() >= deadline:
                raise LeaseTaken(tenant_id)
            time.sleep(self._lock_poll_s)

    @contextmanager
    def lease(self, tenant_id: str, wait_s: float = 0.0) -> Iterator[None]:
        try:
            connection = self._engine.connect()
            self._try_lock(connection, tenant_id, wait_s)
        except OperationalError as error:
            raise _unavailable(error) from error
        except LeaseTaken:
            connection.close()
            raise
        try:
            yield
        finally:
            try:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:c, hashtext(:t))"),
                    {"c": LOCK_CLASS, "t": tenant_id},
                )
                connection.commit()
            except OperationalError:
                # The connection is gone, and the lock with it; never pool it again.
                connection.invalidate()
            connection.close()

    # -- records ----------------------------------------------------------------------

    def insert(self, spec: TenantSpec) -> TenantRecord | None:
        try:
            with self._session() as session:
                row = Tenant(
                    tenant_id=spec.tenant_id,
                    display_name=spec.display_name,
                    plan=spec.plan,
                    quotas=spec.quotas.as_dict() if spec.quotas else {},
                    allowed_origins=list(spec.allowed_origins),
                    state=TenantState.PROVISIONING.value,
                    steps={},
                )
                session.add(row)
                session.flush()
                session.refresh(row)
                return _record(row)
        except IntegrityError:
            return None

    def get(self, tenant_id: str) -> TenantRecord | None:
        with self._session() as session:
            row = session.get(Tenant, tenant_id)
            return None if row is None else _record(row)

    def page(self, after: str, limit: int) -> list[TenantRecord]:
        query = (
            select(Tenant).where(Tenant.tenant_id > after).order_by(Tenant.tenant_id).limit(limit)
        )
        with self._session() as session:
            return [_record(row) for row in session.scalars(query)]

    def set_step(self, tenant_id: str, step: str, state: StepState, message: str = "") -> None:
        with self._session() as session:
            session.execute(
                text(
                    "UPDATE tenants SET steps = jsonb_set(steps, ARRAY[:step]::text[], "
                    "jsonb_build_object('state', CAST(:state AS text), "
                    "'message', CAST(:message AS text), "
                    f"'updated_at', {UTC_NOW})), updated_at = {UTC_NOW} "
                    "WHERE tenant_id = :tenant"
                ),
                {"step": step, "state": state.value, "message": message, "tenant": tenant_id},
            )

    def set_state(self, tenant_id: str, state: TenantState) -> None:
        with self._session() as session:
            session.execute(
                text(f"UPDATE tenants SET state = :s, updated_at = {UTC_NOW} WHERE tenant_id = :t"),
                {"s": state.value, "t": tenant_id},
            )

    def update_spec(self, spec: TenantSpec) -> TenantRecord:
        with self._session() as session:
            row = session.get(Tenant, spec.tenant_id, with_for_update=True)
            assert row is not None, "the reconciler checks the tenant exists first"
            row.display_name = spec.display_name
            row.plan = spec.plan
            row.quotas = spec.quotas.as_dict() if spec.quotas else {}
            row.allowed_origins = list(spec.allowed_origins)
            row.updated_at = func.timezone("UTC", func.now())
            session.flush()
            session.refresh(row)
            return _record(row)

    def activate(
        self, tenant_id: str, keys: Sequence[PendingKey]
    ) -> tuple[TenantRecord, list[StoredKey]]:
        try:
            with tenant_transaction(self._sessions, tenant_id) as session:
                rows = [
                    ApiKey(
                        tenant_id=tenant_id,
                        key_id=key.minted.key_id,
                        secret_sha256=key.minted.secret_sha256,
                        scopes=sorted(str(s) for s in key.scopes),
                        description=key.description,
                    )
                    for key in keys
                ]
                session.add_all(rows)
                session.flush()
                session.execute(
                    text(
                        "UPDATE tenants SET state = 'active', steps = jsonb_set(steps, "
                        "'{keys}', jsonb_build_object('state', 'done', 'message', '', "
                        f"'updated_at', {UTC_NOW})), updated_at = {UTC_NOW} "
                        "WHERE tenant_id = :t"
                    ),
                    {"t": tenant_id},
                )
                tenant = session.get(Tenant, tenant_id, populate_existing=True)
                assert tenant is not None
                stored = []
                for row in rows:
                    session.refresh(row)
                    stored.append(
                        StoredKey(
                            row.tenant_id,
                            row.key_id,
                            bytes(row.secret_sha256),
                            frozenset(Scope(s) for s in row.scopes),
                            row.description,
                            row.created_at,
                            row.revoked_at,
                        )
                    )
                return _record(tenant), stored
        except OperationalError as error:
            raise _unavailable(error) from error

    def purge(self, tenant_id: str) -> list[str]:
        removed = []
        try:
            with tenant_transaction(self._sessions, tenant_id) as session:
                for table in tenant_tables(session):
                    # Table names come from the catalog, not from a caller.
                    deleted = session.execute(
                        text(f'DELETE FROM "{table}" WHERE tenant_id = :t'), {"t": tenant_id}
                    )
                    count = int(getattr(deleted, "rowcount", 0))
                    if count:
                        removed.append(f"{count} rows of {table}")
                gone = session.execute(
                    text("DELETE FROM tenants WHERE tenant_id = :t"), {"t": tenant_id}
                )
                if int(getattr(gone, "rowcount", 0)):
                    removed.append(f"tenant row {tenant_id}")
        except OperationalError as error:
            raise _unavailable(error) from error
        return removed

    # -- producer tokens (written by the admin plane, read by the gateway) ------------

    def set_producer_token(self, tenant_id: str, token: str) -> None:
        try:
            with tenant_transaction(self._sessions, tenant_id) as session:
                session.merge(ProducerToken(tenant_id=tenant_id, token=token))
        except OperationalError as error:
            raise _unavailable(error) from error

    def producer_token(self, tenant_id: str) -> str | None:
        """The tenant's Pulsar role token, read in the tenant's row-level-security scope."""
        try:
            with tenant_transaction(self._sessions, tenant_id) as session:
                token = session.execute(
                    select(ProducerToken.token).where(ProducerToken.tenant_id == tenant_id)
                ).scalar_one_or_none()
        except OperationalError as error:
            raise _unavailable(error) from error
        return None if token is None else str(token)

    # -- the gateway's rate limiter ---------------------------------------------------

    def ingest_quota(self, tenant_id: str) -> IngestQuota | None:
        """`gateway.ingest_quota.QuotaSource`: None for tenants without recorded quotas."""
        with self._session() as session:
            quotas = session.execute(
                select(Tenant.quotas).where(Tenant.tenant_id == tenant_id)
            ).scalar_one_or_none()
        if not quotas or "ingest_events_per_second" not in quotas:
            return None
        return IngestQuota(int(quotas["ingest_events_per_second"]), int(quotas["ingest_burst"]))

    # -- the HTTP door's CORS check ---------------------------------------------------

    def allowed_origins(self, tenant_id: str) -> frozenset[str]:
        """`gateway.cors.OriginSource`: empty for a tenant without origins or no tenant."""
        with self._session() as session:
            origins = session.execute(
                select(Tenant.allowed_origins).where(Tenant.tenant_id == tenant_id)
            ).scalar_one_or_none()
        return frozenset(origins or ())
