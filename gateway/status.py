"""Domain errors → gRPC status with `google.rpc` details, in one place.

Every error carries an ErrorInfo (reason, domain, metadata) so a client in any language can
branch on a stable code; INVALID_ARGUMENT adds BadRequest field violations and
RESOURCE_EXHAUSTED adds RetryInfo when a delay is known.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from magnetar import errors

# Trailers are limited (8 KiB by default in most clients): a batch of 1000 bad events is
# summarised by its first violations plus a count in ErrorInfo.metadata.
MAX_FIELD_VIOLATIONS = 20

_CODES: list[tuple[type[errors.MagnetarError], int]] = [
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
    (errors.DeadlineExceeded, code_pb2.DEADLINE_EXCEEDED),
]


def rpc_code(error: errors.MagnetarError) -> int:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return int(code)
    return int(code_pb2.INTERNAL)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_rpc_status(error: errors.MagnetarError) -> status_pb2.Status:
    metadata = dict(error.metadata)
    details = []
    if isinstance(error, errors.InvalidArgument) and error.violations:
        shown = error.violations[:MAX_FIELD_VIOLATIONS]
        if len(error.violations) > len(shown):
            metadata["field_violations_total"] = str(len(error.violations))
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in shown
                    ]
                )
            )
        )
    if isinstance(error, errors.ResourceExhausted) and error.retry_after_s is not None:
        seconds = math.floor(error.retry_after_s)
        delay = duration_pb2.Duration(
            seconds=seconds, nanos=int((error.retry_after_s - seconds) * 1e9)
        )
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=errors.ERROR_DOMAIN, metadata=metadata
    )
    return status_pb2.Status(
        code=rpc_code(error), message=error.message, details=[_pack(info), *details]
    )


def to_grpc_status(error: errors.MagnetarError) -> grpc.Status:
    """What `context.abort_with_status` takes: code, message and the details trailer."""
    return rpc_status.to_status(to_rpc_status(error))
