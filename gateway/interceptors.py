"""Cross-cutting concerns of every RPC: error mapping, request sizes, authentication, limits.

Each interceptor wraps the handler's behaviour in an async context (`around`), the same way
for unary and streaming methods. Order on the server: errors (outermost, so it also maps
what the others raise; it also refuses a request larger than its method's bound before it is
parsed, see `gateway.request_sizes`), then the process's bound on calls in progress, then
auth, then the per-tenant limits: everything an anonymous caller can cost comes before auth. The caller's principal is kept in a
context variable: grpc.aio runs each RPC in its own task, so the value cannot leak from
one call into another.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc

from gateway.auth import Authenticator
from gateway.limits import ConcurrencyLimiter
from gateway.method_scopes import is_public
from gateway.status import to_grpc_status
from magnetar.api_keys import Principal, Scope
from magnetar.errors import InvalidArgument, MagnetarError, PermissionDenied, ResourceExhausted

log = logging.getLogger(__name__)

_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("magnetar_principal")
_REAUTHORIZE: contextvars.ContextVar[Callable[[], Awaitable[Principal]]] = contextvars.ContextVar(
    "magnetar_reauthorize"
)


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _PRINCIPAL.get()


def current_tenant() -> str:
    """The caller's tenant; PermissionDenied for the platform's key (it has none)."""
    tenant_id = _PRINCIPAL.get().tenant_id
    if tenant_id is None:
        raise PermissionDenied("this call needs a tenant's API key", reason="TENANT_KEY_REQUIRED")
    return tenant_id


async def reauthorize() -> None:
    """Checks again that the call's key is valid and has the method's scope; raises as at
    the call's start (UNAUTHENTICATED once revoked). Authentication runs once per call, so
    a stream calls this per message: through the key cache, a revoked key ends an open
    stream within the cache's TTL, at the cost of a hash and a dict lookup per message."""
    await _REAUTHORIZE.get()()


Around = Callable[[str, Mapping[str, str], Any], AbstractAsyncContextManager[None]]


class _Undecodable:
    """A request message that did not parse, in place of the message.

    grpc.aio answers a request its deserializer rejects with UNKNOWN before any interceptor
    runs; the error mapping's deserializer returns this instead, and the handler raises
    INVALID_ARGUMENT for it inside the error mapping (see `ErrorMappingInterceptor`).
    """

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class _TooLarge:
    """A request message larger than its method's bound, in place of the message (unparsed)."""

    __slots__ = ("limit", "size")

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit


def _tolerant(
    deserializer: Callable[[bytes], Any] | None, max_bytes: int | None = None
) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        if max_bytes is not None and len(data) > max_bytes:
            return _TooLarge(len(data), max_bytes)
        try:
            return deserializer(data)
        except Exception as error:
            return _Undecodable(str(error) or type(error).__name__)

    return deserialize


def _decoded(request: Any) -> Any:
    if isinstance(request, _TooLarge):
        raise ResourceExhausted(
            f"the request message is {request.size} bytes; this method accepts at most "
            f"{request.limit}",
            reason="REQUEST_TOO_LARGE",
            metadata={"max_request_bytes": str(request.limit), "request_bytes": str(request.size)},
        )
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            f"the request message does not parse as this method's request: {request.error}",
            reason="REQUEST_UNDECODABLE",
        )
    return request


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


def _wrap(
    handler: Any,
    method: str,
    metadata: Mapping[str, str],
    around: Around,
    *,
    check_decoding: bool = False,
    max_bytes: int | None = None,
) -> Any:
    """The same handler, its behaviour run inside `around(...)`; with `check_decoding`,
    requests that do not parse, or exceed `max_bytes`, reach it as INVALID_ARGUMENT or
    RESOURCE_EXHAUSTED raised inside `around`."""
    deserializer = handler.request_deserializer
    if check_decoding:
        deserializer = _tolerant(deserializer, max_bytes)

    def one(request: Any) -> Any:
        return _decoded(request) if check_decoding else request

    def many(requests: Any) -> Any:
        return _decoded_stream(requests) if check_decoding else requests

    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            async with around(method, metadata, context):
                return await inner_uu(one(request), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async with around(method, metadata, context):
                async for response in inner_us(one(request), context):
                    yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            async with around(method, metadata, context):
                return await inner_su(many(requests), context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, deserializer, handler.response_serializer
        )
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        async with around(method, metadata, context):
            async for response in inner_ss(many(requests), context):
                yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, deserializer, handler.response_serializer
    )


class _AroundInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Base: wraps every non-public method's behaviour in `self.around`."""

    check_decoding = False

    def max_request_bytes(self, method: str) -> int | None:
        return None

    def around(
        self, method: str, metadata: Mapping[str, str], context: Any
    ) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_public(method):
            return handler
        metadata = {
            k: v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)
        }
        return _wrap(
            handler,
            method,
            metadata,
            self.around,
            check_decoding=self.check_decoding,
            max_bytes=self.max_request_bytes(method),
        )


class ErrorMappingInterceptor(_AroundInterceptor):
    """MagnetarError → its status and details; anything unexpected → INTERNAL, logged; a
    request that does not parse → INVALID_ARGUMENT (`REQUEST_UNDECODABLE`); one larger than
    `request_bytes(method)` → RESOURCE_EXHAUSTED (`REQUEST_TOO_LARGE`), unparsed."""

    # Checked here, outermost: a request that does not parse, or is too large, is answered
    # before authentication, as grpc itself answers it before any interceptor.
    check_decoding = True

    def __init__(self, request_bytes: Callable[[str], int] | None = None) -> None:
        self._request_bytes = request_bytes

    def max_request_bytes(self, method: str) -> int | None:
        return None if self._request_bytes is None else self._request_bytes(method)

    @asynccontextmanager
    async def around(
        self, method: str, metadata: Mapping[str, str], context: Any
    ) -> AsyncIterator[None]:
        try:
            yield
        except MagnetarError as error:
            await context.abort_with_status(to_grpc_status(error))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")


class AuthInterceptor(_AroundInterceptor):
    """`authorization: Bearer <key>` → principal; the method's scope is required."""

    def __init__(self, authenticator: Authenticator, scopes: Mapping[str, Scope]) -> None:
        self._authenticator = authenticator
        self._scopes = scopes

    @asynccontextmanager
    async def around(
        self, method: str, metadata: Mapping[str, str], context: Any
    ) -> AsyncIterator[None]:
        authorization = metadata.get("authorization")
        peer = context.peer()
        _PRINCIPAL.set(await self._authorize(method, authorization, peer))
        _REAUTHORIZE.set(functools.partial(self._authorize, method, authorization, peer))
        yield

    async def _authorize(self, method: str, authorization: str | None, peer: str) -> Principal:
        principal = await self._authenticator.authenticate(authorization, peer)
        needed = self._scopes.get(method)
        if needed is None:
            raise PermissionDenied(f"no caller may use {method}", reason="METHOD_NOT_ALLOWED")
        if not principal.allows(needed):
            raise PermissionDenied(
                f"this API key lacks the {needed} scope",
                reason="SCOPE_MISSING",
                metadata={"required_scope": str(needed)},
            )
        return principal


def _tenant_key() -> str:
    principal = _PRINCIPAL.get(None)
    return "platform" if principal is None or principal.tenant_id is None else principal.tenant_id


def _process_key() -> str:
    return "process"


class LimitsInterceptor(_AroundInterceptor):
    """At most `limit` calls in progress per tenant (streams count while open); with
    `per_process`, in the whole process whoever makes them (placed before auth, so
    unauthenticated calls count too)."""

    def __init__(self, limiter: ConcurrencyLimiter, *, per_process: bool = False) -> None:
        self._limiter = limiter
        self._key = _process_key if per_process else _tenant_key

    @asynccontextmanager
    async def around(
        self, method: str, metadata: Mapping[str, str], context: Any
    ) -> AsyncIterator[None]:
        async with self._limiter.slot(self._key()):
            yield
