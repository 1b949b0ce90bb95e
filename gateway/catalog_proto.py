"""`magnetar.v1.Item` ↔ the catalog's `CatalogItem`, shared by the servicer and the topic."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from magnetar.serving.catalog import CatalogItem
from magnetar.v1 import catalog_service_pb2 as pb


def item_from_proto(item: pb.Item) -> CatalogItem:
    # update_time is output only: ignored here, set by the catalog.
    return CatalogItem(
        item_id=item.item_id,
        title=item.title,
        categories=tuple(item.categories),
        price=item.price,
        available=item.available,
        attributes=dict(item.attributes),
    )


def item_to_proto(item: CatalogItem) -> pb.Item:
    update_time = timestamp_pb2.Timestamp()
    update_time.FromMilliseconds(item.update_time_ms)
    return pb.Item(
        item_id=item.item_id,
        title=item.title,
        categories=item.categories,
        price=item.price,
        available=item.available,
        attributes=dict(item.attributes),
        update_time=update_time,
    )
