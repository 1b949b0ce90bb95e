"""Typed SQLAlchemy models of Magnetar's PostgreSQL schema.

Every tenant-scoped table leads its keys and indexes with ``tenant_id`` and has row-level
security forced (see the migrations); platform tables (``tenants``) are managed by the
reconciler with the owner role's migrations granting the application role what it needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TenantId = Annotated[str, mapped_column(String(64))]
CreatedAt = Annotated[datetime, mapped_column(server_default=func.now())]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    """A Magnetar tenant: one Pulsar tenant, its namespaces and its rows here."""

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("state IN ('provisioning', 'active', 'failed', 'deleting')", name="state"),
    )

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
    # The desired state and onboarding progress the reconciler keeps (tenants.store).
    plan: Mapped[str] = mapped_column(String(32), server_default="")
    quotas: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    state: Mapped[str] = mapped_column(String(16), server_default="active")
    steps: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Web origins whose pages may call the HTTP door (tenants.origins).
    allowed_origins: Mapped[list[str]] = mapped_column(
        ARRAY(String(255)), server_default=text("'{}'::varchar(255)[]")
    )


class ProducerToken(Base):
    """A tenant's Pulsar role token (migration 0010): the admin plane writes it at
    onboarding, the public gateway reads it in the tenant's row-level-security scope."""

    __tablename__ = "producer_tokens"

    tenant_id: Mapped[TenantId] = mapped_column(
        ForeignKey("tenants.tenant_id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class ApiKey(Base):
    """A tenant's API key. Only the SHA-256 of the secret is kept (see `magnetar.api_keys`).

    Row-level security is forced on this table: the gateway reads a key inside a
    transaction scoped to the tenant named in the key itself.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("octet_length(secret_sha256) = 32", name="sha256"),
        CheckConstraint("cardinality(scopes) > 0", name="has_scope"),
        # Tenant scopes only (migration 0008): ADMIN is the platform key's, never stored.
        CheckConstraint(
            "scopes <@ ARRAY['ingest', 'read', 'manage']::varchar(16)[]", name="tenant_scopes"
        ),
    )

    tenant_id: Mapped[TenantId] = mapped_column(
        ForeignKey("tenants.tenant_id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    description: Mapped[str] = mapped_column(String(200), server_default="")
    created_at: Mapped[CreatedAt]
    revoked_at: Mapped[datetime | None]
