"""Domain errors: what went wrong, in words a client in any language can act on.

Domain code raises these; the gateway's error interceptor maps each to one gRPC status with
`google.rpc` details (ErrorInfo always, BadRequest field violations and RetryInfo when
given). Nothing here knows about gRPC, so the same errors serve the CLI and the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ERROR_DOMAIN = "magnetar.dev"

# User input quoted back in an error is cut to this many characters: a batch's violations
# travel in the status trailers (about 8 KiB in most clients), and 20 echoed 16 KiB keys
# would make the answer itself fail.
ECHO_MAX_CHARS = 64


def echo(value: str) -> str:
    """`value` (user input) as an error may show it: at most `ECHO_MAX_CHARS` characters,
    the last one an ellipsis when cut."""
    return value if len(value) <= ECHO_MAX_CHARS else value[: ECHO_MAX_CHARS - 1] + "…"


@dataclass(frozen=True)
class FieldViolation:
    """One field that broke a rule; `field` is a path like ``events[3].occurred_at``."""

    field: str
    description: str


class MagnetarError(Exception):
    """Base class. `reason` is a stable UPPER_SNAKE code (google.rpc.ErrorInfo.reason)."""

    reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class Unauthenticated(MagnetarError):
    """No credentials, or credentials that do not identify anyone (UNAUTHENTICATED)."""

    reason = "API_KEY_INVALID"


class PermissionDenied(MagnetarError):
    """A known caller asked for something its key does not allow (PERMISSION_DENIED)."""

    reason = "SCOPE_MISSING"


class InvalidArgument(MagnetarError):
    """The request itself is wrong; resending it unchanged fails again (INVALID_ARGUMENT)."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = tuple(violations)


class NotFound(MagnetarError):
    """The named thing does not exist for this caller (NOT_FOUND)."""

    reason = "NOT_FOUND"


class AlreadyExists(MagnetarError):
    """Creating something that exists (ALREADY_EXISTS)."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(MagnetarError):
    """The system is not in a state that allows this yet, e.g. a tenant not provisioned."""

    reason = "FAILED_PRECONDITION"


class ResourceExhausted(MagnetarError):
    """A quota or bound is reached; retry after `retry_after_s` (RESOURCE_EXHAUSTED)."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_s = retry_after_s


class Unavailable(MagnetarError):
    """A dependency (Pulsar, PostgreSQL) cannot do its part now; retry (UNAVAILABLE)."""

    reason = "DEPENDENCY_UNAVAILABLE"


class DeadlineExceeded(MagnetarError):
    """The caller's deadline passed before the work was confirmed (DEADLINE_EXCEEDED)."""

    reason = "DEADLINE_EXCEEDED"
