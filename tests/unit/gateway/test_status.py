"""Each domain error becomes one status code with google.rpc details a client can decode."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.status import MAX_FIELD_VIOLATIONS, to_grpc_status, to_rpc_status
from magnetar import errors


def unpack(status: status_pb2.Status, cls: type) -> object | None:
    for detail in status.details:
        if detail.Is(cls.DESCRIPTOR):  # type: ignore[attr-defined]
            found: object = cls()
            detail.Unpack(found)
            return found
    return None


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.Unauthenticated("x"), code_pb2.UNAUTHENTICATED),
        (errors.PermissionDenied("x"), code_pb2.PERMISSION_DENIED),
        (errors.InvalidArgument("x"), code_pb2.INVALID_ARGUMENT),
        (errors.NotFound("x"), code_pb2.NOT_FOUND),
        (errors.AlreadyExists("x"), code_pb2.ALREADY_EXISTS),
        (errors.FailedPrecondition("x"), code_pb2.FAILED_PRECONDITION),
        (errors.ResourceExhausted("x"), code_pb2.RESOURCE_EXHAUSTED),
        (errors.Unavailable("x"), code_pb2.UNAVAILABLE),
        (errors.DeadlineExceeded("x"), code_pb2.DEADLINE_EXCEEDED),
    ],
)
def test_each_error_has_its_code_and_an_error_info(error: errors.MagnetarError, code: int) -> None:
    status = to_rpc_status(error)
    assert status.code == code
    info = unpack(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == error.reason
    assert info.domain == errors.ERROR_DOMAIN


def test_invalid_argument_carries_field_violations_capped_with_a_total() -> None:
    violations = [errors.FieldViolation(f"events[{i}].item_id", "required") for i in range(50)]
    status = to_rpc_status(errors.InvalidArgument("bad", violations, reason="EVENTS_INVALID"))
    bad_request = unpack(status, error_details_pb2.BadRequest)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert len(bad_request.field_violations) == MAX_FIELD_VIOLATIONS
    assert bad_request.field_violations[0].field == "events[0].item_id"
    info = unpack(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.metadata["field_violations_total"] == "50"


def test_resource_exhausted_carries_the_retry_delay() -> None:
    status = to_rpc_status(errors.ResourceExhausted("full", retry_after_s=1.25))
    retry = unpack(status, error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 250_000_000)


def test_grpc_status_puts_the_details_in_the_standard_trailer() -> None:
    status = to_grpc_status(errors.Unavailable("pulsar down", reason="PULSAR_TIMEOUT"))
    assert status.code == grpc.StatusCode.UNAVAILABLE
    assert status.details == "pulsar down"
    (key, value), *_ = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    assert status_pb2.Status.FromString(value).message == "pulsar down"
