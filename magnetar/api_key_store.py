"""API keys in PostgreSQL, always read and written inside the owning tenant's RLS scope."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from magnetar.api_keys import NewKey, Scope, mint_key
from magnetar.db.engine import tenant_transaction
from magnetar.db.models import ApiKey, Tenant
from magnetar.errors import NotFound, Unavailable


@dataclass(frozen=True)
class StoredKey:
    """A key as stored: everything but the secret."""

    tenant_id: str
    key_id: str
    secret_sha256: bytes
    scopes: frozenset[Scope]
    description: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _stored(row: ApiKey) -> StoredKey:
    return StoredKey(
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        secret_sha256=bytes(row.secret_sha256),
        scopes=frozenset(Scope(s) for s in row.scopes),
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class ApiKeyStore:
    """Create, find, list and revoke keys as the application role (RLS applies)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def _tenant(self, tenant_id: str) -> Iterator[Session]:
        try:
            with tenant_transaction(self._sessions, tenant_id) as session:
                yield session
        except OperationalError as exc:
            raise Unavailable("PostgreSQL is unavailable", reason="DATABASE_UNAVAILABLE") from exc

    def create(
        self, tenant_id: str, scopes: Iterable[Scope], description: str = ""
    ) -> tuple[NewKey, StoredKey]:
        minted = mint_key(tenant_id)
        with self._tenant(tenant_id) as session:
            if session.get(Tenant, tenant_id) is None:
                raise NotFound(f"tenant {tenant_id!r} does not exist", reason="TENANT_NOT_FOUND")
            row = ApiKey(
                tenant_id=tenant_id,
                key_id=minted.key_id,
                secret_sha256=minted.secret_sha256,
                scopes=sorted(str(s) for s in scopes),
                description=description,
            )
            session.add(row)
            session.flush()
            session.refresh(row)
            return minted, _stored(row)

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None:
        with self._tenant(tenant_id) as session:
            row = session.get(ApiKey, (tenant_id, key_id))
            return None if row is None else _stored(row)

    def list(self, tenant_id: str, *, include_revoked: bool = False) -> list[StoredKey]:
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        with self._tenant(tenant_id) as session:
            rows = session.scalars(query.order_by(ApiKey.created_at.desc(), ApiKey.key_id))
            return [_stored(row) for row in rows]

    def revoke(self, tenant_id: str, key_id: str) -> StoredKey:
        """Idempotent: revoking a revoked key keeps its first revocation time."""
        with self._tenant(tenant_id) as session:
            row = session.get(ApiKey, (tenant_id, key_id))
            if row is None:
                raise NotFound(f"tenant has no key {key_id!r}", reason="API_KEY_NOT_FOUND")
            if row.revoked_at is None:
                # The database's clock, like created_at: one clock for every timestamp.
                row.revoked_at = func.now()
                session.flush()
                session.refresh(row)
            return _stored(row)
