"""`CatalogStore` over PostgreSQL: the ``catalog_items`` table, in the tenant's RLS scope."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from magnetar.db.availability import unavailable_on_failure
from magnetar.db.catalog_models import CatalogItemRow
from magnetar.db.change_stream import CHANNEL, payloads
from magnetar.db.engine import tenant_transaction
from magnetar.serving.catalog import CatalogItem


def _utc(ms: int) -> datetime:
    # Naive UTC, like every timestamp column of the schema.
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def _ms(moment: datetime) -> int:
    return round(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _item(row: CatalogItemRow) -> CatalogItem:
    return CatalogItem(
        item_id=row.item_id,
        title=row.title,
        categories=tuple(row.categories),
        price=row.price,
        available=row.available,
        attributes=dict(row.attributes),
        update_time_ms=_ms(row.update_time),
    )


def _announce(session: Session, tenant_id: str, item_ids: Sequence[str]) -> None:
    """Gateways drop these items' catalog facts from memory when the transaction commits."""
    for payload in payloads(tenant_id, items=item_ids):
        session.execute(select(func.pg_notify(CHANNEL, payload)))


class PostgresCatalogStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def _tenant(self, tenant_id: str) -> Iterator[Session]:
        with unavailable_on_failure(), tenant_transaction(self._sessions, tenant_id) as session:
            yield session

    def upsert(
        self, tenant_id: str, items: Sequence[CatalogItem], before_commit: Callable[[], None]
    ) -> None:
        rows = [
            {
                "tenant_id": tenant_id,
                "item_id": item.item_id,
                "title": item.title,
                "categories": list(item.categories),
                "price": item.price,
                "available": item.available,
                "attributes": dict(item.attributes),
                "update_time": _utc(item.update_time_ms),
                "deleted_at": None,
            }
            for item in sorted(items, key=lambda i: i.item_id)  # one lock order for all writers
        ]
        statement = insert(CatalogItemRow).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[CatalogItemRow.tenant_id, CatalogItemRow.item_id],
            set_={
                name: statement.excluded[name]
                for name in (
                    "title",
                    "categories",
                    "price",
                    "available",
                    "attributes",
                    "update_time",
                    "deleted_at",
                )
            },
        )
        with self._tenant(tenant_id) as session:
            session.execute(statement)
            _announce(session, tenant_id, [item.item_id for item in items])
            before_commit()

    def get(self, tenant_id: str, item_id: str) -> CatalogItem | None:
        with self._tenant(tenant_id) as session:
            row = session.scalars(
                select(CatalogItemRow).where(
                    CatalogItemRow.tenant_id == tenant_id,
                    CatalogItemRow.item_id == item_id,
                    CatalogItemRow.deleted_at.is_(None),
                )
            ).one_or_none()
            return None if row is None else _item(row)

    def delete(
        self, tenant_id: str, item_id: str, before_commit: Callable[[], None]
    ) -> CatalogItem | None:
        with self._tenant(tenant_id) as session:
            row = session.scalars(
                update(CatalogItemRow)
                .where(
                    CatalogItemRow.tenant_id == tenant_id,
                    CatalogItemRow.item_id == item_id,
                    CatalogItemRow.deleted_at.is_(None),
                )
                .values(deleted_at=func.timezone("UTC", func.now()))
                .returning(CatalogItemRow)
            ).one_or_none()
            if row is None:
                return None
            _announce(session, tenant_id, [item_id])
            before_commit()
            return _item(row)
