"""Every RPC of the contract has a scope; health and reflection are public."""

from __future__ import annotations

from gateway.method_scopes import is_public, method_scopes
from magnetar.api_keys import Scope
from magnetar.v1 import (
    catalog_service_pb2,
    event_service_pb2,
    personalization_service_pb2,
    tenant_service_pb2,
    user_service_pb2,
)


def test_every_method_of_every_service_has_a_scope() -> None:
    table = method_scopes()
    for module in (
        catalog_service_pb2,
        event_service_pb2,
        personalization_service_pb2,
        tenant_service_pb2,
        user_service_pb2,
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"/{service.full_name}/{method.name}" in table


def test_scopes_follow_the_contract() -> None:
    table = method_scopes()
    assert table["/magnetar.v1.EventService/Ingest"] == Scope.INGEST
    assert table["/magnetar.v1.EventService/StreamEvents"] == Scope.INGEST
    assert table["/magnetar.v1.PersonalizationService/Recommend"] == Scope.READ
    assert table["/magnetar.v1.CatalogService/GetItem"] == Scope.READ
    # The INGEST key ships in client apps; catalog writes and erasure need MANAGE.
    assert table["/magnetar.v1.CatalogService/UpsertItems"] == Scope.MANAGE
    assert table["/magnetar.v1.CatalogService/DeleteItem"] == Scope.MANAGE
    assert table["/magnetar.v1.UserService/DeleteUser"] == Scope.MANAGE
    assert table["/magnetar.v1.TenantService/CreateTenant"] == Scope.ADMIN


def test_health_and_reflection_are_public_and_nothing_else() -> None:
    assert is_public("/grpc.health.v1.Health/Check")
    assert is_public("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not is_public("/magnetar.v1.EventService/Ingest")
    assert not is_public("/grpc.health.v1.Health")
