"""Typed models of the personalization state the materializer writes and the gateway reads.

Scores are stored lazily decayed: ``score`` is the value at time ``as_of`` (epoch ms); readers
and the next upsert decay it with the tenant's half-life (see
`magnetar.personalization.decay`). Times are epoch milliseconds (BIGINT), as in the fold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from sqlalchemy import BigInteger, Float, Index, Integer, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from magnetar.db.models import Base, TenantId

EpochMs = Annotated[int, mapped_column(BigInteger)]
Score = Annotated[float, mapped_column(Float)]
Id = Annotated[str, mapped_column(String(128))]


class ProcessedEvent(Base):
    """The processed-event ledger: an event id here has been counted in the aggregates.

    Inserted in the same transaction as the aggregate updates, so a redelivered event
    finds its row and changes nothing.
    """

    __tablename__ = "processed_events"
    __table_args__ = (
        # Expiry by age and "what was committed since" both walk this index.
        Index("ix_processed_events_tenant_committed", "tenant_id", "committed_at"),
    )

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    event_id: Mapped[Id] = mapped_column(primary_key=True)
    committed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # When the gateway accepted the event (UTC); with committed_at, the event's freshness.
    accepted_at: Mapped[datetime | None]


class LedgerCount(Base):
    """Events counted per tenant, in shards (`magnetar.db.ledger`): the ledger expires, this not."""

    __tablename__ = "ledger_counts"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    counted: Mapped[int] = mapped_column(BigInteger)


class UserItemSignalRow(Base):
    __tablename__ = "user_item_signals"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    user_id: Mapped[Id] = mapped_column(primary_key=True)
    item_id: Mapped[Id] = mapped_column(primary_key=True)
    score: Mapped[Score]
    as_of: Mapped[EpochMs]
    purchases: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[EpochMs]


class UserCategoryAffinityRow(Base):
    __tablename__ = "user_category_affinities"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    user_id: Mapped[Id] = mapped_column(primary_key=True)
    category: Mapped[Id] = mapped_column(primary_key=True)
    score: Mapped[Score]
    as_of: Mapped[EpochMs]


class UserActivityRow(Base):
    __tablename__ = "user_activity"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    user_id: Mapped[Id] = mapped_column(primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger)
    purchases: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[EpochMs]
    last_seen: Mapped[EpochMs]
    # The user's recent items, newest first, bounded (see `merge_recent`): one row per user
    # keeps "recent items" a single-row read on the serving path.
    recent_items: Mapped[list[list[str | int]]] = mapped_column(JSONB)


class ItemCategoriesRow(Base):
    __tablename__ = "item_categories"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    item_id: Mapped[Id] = mapped_column(primary_key=True)
    categories: Mapped[list[str]] = mapped_column(ARRAY(String(128)))
    as_of: Mapped[EpochMs]


class ItemPopularityRow(Base):
    __tablename__ = "item_popularity"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    item_id: Mapped[Id] = mapped_column(primary_key=True)
    score: Mapped[Score]
    as_of: Mapped[EpochMs]


class ItemCovisitationRow(Base):
    __tablename__ = "item_covisitation"

    tenant_id: Mapped[TenantId] = mapped_column(primary_key=True)
    item_id: Mapped[Id] = mapped_column(primary_key=True)
    other_item_id: Mapped[Id] = mapped_column(primary_key=True)
    score: Mapped[Score]
    as_of: Mapped[EpochMs]


TENANT_SCOPED_STATE_TABLES = (
    ProcessedEvent.__tablename__,
    LedgerCount.__tablename__,
    UserItemSignalRow.__tablename__,
    UserCategoryAffinityRow.__tablename__,
    UserActivityRow.__tablename__,
    ItemCategoriesRow.__tablename__,
    ItemPopularityRow.__tablename__,
    ItemCovisitationRow.__tablename__,
)
