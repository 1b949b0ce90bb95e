"""What the serving tests need to talk to a gateway over gRPC only: stubs with a key, and
the status and `google.rpc` details of a failed call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from magnetar.v1 import (
    catalog_service_pb2_grpc,
    event_service_pb2_grpc,
    personalization_service_pb2_grpc,
    user_service_pb2_grpc,
)


@dataclass(frozen=True)
class Stubs:
    events: event_service_pb2_grpc.EventServiceStub
    personalization: personalization_service_pb2_grpc.PersonalizationServiceStub
    catalog: catalog_service_pb2_grpc.CatalogServiceStub
    users: user_service_pb2_grpc.UserServiceStub


def stubs(channel: grpc.Channel) -> Stubs:
    return Stubs(
        event_service_pb2_grpc.EventServiceStub(channel),
        personalization_service_pb2_grpc.PersonalizationServiceStub(channel),
        catalog_service_pb2_grpc.CatalogServiceStub(channel),
        user_service_pb2_grpc.UserServiceStub(channel),
    )


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    message: str
    reason: str
    # BadRequest field violations: field → description.
    violations: dict[str, str]
    # ErrorInfo metadata, e.g. {"required_scope": "manage"}.
    metadata: dict[str, str]


def failure(call: Callable[[], Any]) -> Failure:
    """Run `call`, which must fail; its status code and decoded details."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value
    status = rpc_status.from_call(error)
    reason = ""
    violations: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v.description for v in bad.field_violations}
    return Failure(error.code(), error.details() or "", reason, violations, metadata)
