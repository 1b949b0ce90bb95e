"""`magnetar.v1.CatalogService`: proto in, `Catalog` (the domain), proto out.

Items go to PostgreSQL (through the gateway's engine) and to the tenant's compacted topic;
both calls block, so each RPC runs on a worker thread.
"""

from __future__ import annotations

from typing import Any

from gateway.blocking import in_thread
from gateway.catalog_proto import item_from_proto, item_to_proto
from gateway.interceptors import current_tenant
from magnetar.serving.catalog import Catalog
from magnetar.serving.memory import ServingMemory
from magnetar.v1 import catalog_service_pb2 as pb
from magnetar.v1 import catalog_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CatalogService"].full_name


class CatalogService(pb_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, memory: ServingMemory) -> None:
        self._catalog = catalog
        # This process's serving memory: a write is read back at once here (the change
        # stream tells the other processes a few ms later).
        self._memory = memory

    def _forget(self, tenant: str, item_ids: list[str]) -> None:
        self._memory.forget_items(tenant, item_ids)

    async def UpsertItems(
        self, request: pb.UpsertItemsRequest, context: Any
    ) -> pb.UpsertItemsResponse:
        tenant = current_tenant()
        items = [item_from_proto(item) for item in request.items]
        count = await in_thread(context, self._catalog.upsert_items, tenant, items)
        self._forget(tenant, [item.item_id for item in request.items])
        return pb.UpsertItemsResponse(upserted_count=count)

    async def GetItem(self, request: pb.GetItemRequest, context: Any) -> pb.GetItemResponse:
        item = await in_thread(context, self._catalog.get_item, current_tenant(), request.item_id)
        return pb.GetItemResponse(item=item_to_proto(item))

    async def DeleteItem(
        self, request: pb.DeleteItemRequest, context: Any
    ) -> pb.DeleteItemResponse:
        tenant = current_tenant()
        item = await in_thread(context, self._catalog.delete_item, tenant, request.item_id)
        self._forget(tenant, [request.item_id])
        return pb.DeleteItemResponse(item=item_to_proto(item))
