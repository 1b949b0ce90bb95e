"""Which scope each RPC needs, keyed by full method name taken from the descriptors.

Health and reflection are public (probes and tools call them without a key). A method
missing from this table is refused: a new service must say who may call it. Why each
service has its scope: docs/serving.md ("Scopes").
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from magnetar.api_keys import Scope
from magnetar.v1 import (
    catalog_service_pb2,
    event_service_pb2,
    personalization_service_pb2,
    tenant_service_pb2,
    user_service_pb2,
)

PUBLIC_SERVICES = frozenset(
    {
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name,
        # grpc.reflection.v1 (same shape as v1alpha) for clients that ask for it first.
        "grpc.reflection.v1.ServerReflection",
    }
)


def _methods(
    service: ServiceDescriptor, default: Scope, overrides: Mapping[str, Scope] | None = None
) -> dict[str, Scope]:
    overrides = overrides or {}
    return {
        f"/{service.full_name}/{method.name}": overrides.get(method.name, default)
        for method in service.methods
    }


def method_scopes() -> dict[str, Scope]:
    return {
        **_methods(event_service_pb2.DESCRIPTOR.services_by_name["EventService"], Scope.INGEST),
        **_methods(
            personalization_service_pb2.DESCRIPTOR.services_by_name["PersonalizationService"],
            Scope.READ,
        ),
        **_methods(
            catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"],
            Scope.MANAGE,
            {"GetItem": Scope.READ},
        ),
        **_methods(user_service_pb2.DESCRIPTOR.services_by_name["UserService"], Scope.MANAGE),
        **_methods(tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"], Scope.ADMIN),
    }


def is_public(method: str) -> bool:
    """`/grpc.health.v1.Health/Check` → True."""
    return method.split("/")[1] in PUBLIC_SERVICES if method.count("/") == 2 else False
