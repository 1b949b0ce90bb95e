"""The HTTP door's routes come from the protos' annotations; every gRPC code has an HTTP one."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.rpc import code_pb2

from gateway.http_door import HTTP_STATUS, routes


def test_the_annotated_methods_are_the_routes() -> None:
    served = {route.path: route.grpc_method for route in routes()}
    assert served == {
        "/v1/events:ingest": "/magnetar.v1.EventService/Ingest",
        "/v1/recommendations:recommend": "/magnetar.v1.PersonalizationService/Recommend",
        "/v1/items:similar": "/magnetar.v1.PersonalizationService/SimilarItems",
        "/v1/items:trending": "/magnetar.v1.PersonalizationService/Trending",
    }


def test_every_grpc_code_maps_to_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(code_pb2.Code.values())
    assert HTTP_STATUS[code_pb2.INVALID_ARGUMENT] == 400
    assert HTTP_STATUS[code_pb2.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS[code_pb2.UNAVAILABLE] == 503


def test_a_route_the_door_cannot_serve_is_refused_at_start() -> None:
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/http_door_get.proto", package="http_door_test"
    )
    file.message_type.add(name="M")
    method = file.service.add(name="S").method.add(
        name="Get", input_type=".http_door_test.M", output_type=".http_door_test.M"
    )
    method.options.Extensions[annotations_pb2.http].get = "/v1/things"
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    with pytest.raises(ValueError, match="only `post`"):
        routes([pool.FindServiceByName("http_door_test.S")])
