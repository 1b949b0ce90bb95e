"""Typed SQLAlchemy models of Magnetar's PostgreSQL schema.

Every tenant-scoped table leads its keys and indexes with ``tenant_id`` and has row-level
security forced (see the migrations); platform tables (``tenants``) are managed by the
reconciler with the owner role's migrations granting the application role what it needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from sqlalchemy import MetaData, String, func
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

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
