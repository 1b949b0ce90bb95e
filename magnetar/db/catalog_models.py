"""Typed models of the tables the serving side writes: the catalog and erasure tombstones.

Both are tenant-scoped like the state tables: ``tenant_id`` leads the key and row-level
security is forced (see migration 0006).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from sqlalchemy import BigInteger, Float, String, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from magnetar.db.models import Base, TenantId

Id = Annotated[str, mapped_column(String(128))]


class CatalogItemRow(Base):
    """One item of a tenant's catalog, as last written by `CatalogService.UpsertItems`.

    A deleted item keeps its row with ``deleted_at`` set: the state may still hold its
    signals (past events stay counted), and serving needs to know to leave it out.
    """

    __tablename__ = "catalog_items"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    item_id: Mapped[Id] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(512))
    categories: Mapped[list[str]] = mapped_column(ARRAY(String(128)))
    price: Mapped[float] = mapped_column(Float)
    available: Mapped[bool]
    attributes: Mapped[dict[str, str]] = mapped_column(JSONB)
    update_time: Mapped[datetime] = mapped_column(server_default=func.now())
    deleted_at: Mapped[datetime | None]


class ErasedUserRow(Base):
    """A user whose state was erased: the materializer drops their events that occurred
    before ``erased_before`` (epoch ms), so late or redelivered events cannot bring the
    state back. Only the id stays, as the tombstone itself."""

    __tablename__ = "erased_users"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    user_id: Mapped[Id] = mapped_column(primary_key=True)
    erased_before: Mapped[int] = mapped_column(BigInteger)
    erased_at: Mapped[datetime] = mapped_column(server_default=func.now())


SERVING_TABLES = (CatalogItemRow.__tablename__, ErasedUserRow.__tablename__)
