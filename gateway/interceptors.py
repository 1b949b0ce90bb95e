"""Every RPC's cross-cutting concerns in one interceptor: metrics, error mapping, request
sizes, the process's bound on calls in progress, authentication and scopes, the tenant's
bound, in that order: everything an anonymous caller can cost comes before auth
(docs/serving.md, "The call path"). The caller's principal lives in a context variable, so
it cannot leak from one call's task into another's.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
from prometheus_client import Histogram

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
    stream within the cache's TTL, at the cost of a hash and a dict lookup per message.
    Streaming methods only (a unary call has nothing to check again)."""
    await _REAUTHORIZE.get()()


class _Undecodable:
    """A request message that did not parse, in place of the message.

    grpc.aio answers a request its deserializer rejects with UNKNOWN before any interceptor
    runs; the error mapping's deserializer returns this instead, and the handler raises
    INVALID_ARGUMENT for it inside the error mapping (see `GatewayInterceptor`).
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


_UNAUTHENTICATED = "unauthenticated"
_PROCESS = "process"


def _authorization(context: Any) -> str | None:
    """The call's `authorization` metadata (the last one, as a dict of them would keep)."""
    found = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            found = value
    return found


class _Method:
    """What a method's calls share, built once per method: its scope, its metric children."""

    __slots__ = ("children", "name", "scope")

    def __init__(self, name: str, scope: Scope | None) -> None:
        self.name = name
        self.scope = scope
        # code name → tenant label → the histogram's child.
        self.children: dict[str, dict[str, Any]] = {}


class GatewayInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Metrics, errors, request sizes, the process's and each tenant's bound on calls in
    progress, authentication and scopes; public methods (health, reflection) pass as is."""

    def __init__(
        self,
        authenticator: Authenticator,
        scopes: Mapping[str, Scope],
        *,
        process_calls: ConcurrencyLimiter,
        tenant_calls: ConcurrencyLimiter,
        request_bytes: Callable[[str], int] | None = None,
        histogram: Histogram | None = None,
    ) -> None:
        self._auth = authenticator
        self._scopes = scopes
        self._process_calls = process_calls
        self._tenant_calls = tenant_calls
        self._request_bytes = request_bytes
        self._histogram = histogram
        # method → (grpc's handler, ours): rebuilt only if grpc hands back another handler.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = handler if is_public(method) else self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    # -- one call ----------------------------------------------------------------------

    @staticmethod
    def _check_scope(method: _Method, principal: Principal) -> None:
        needed = method.scope
        if needed is None:
            raise PermissionDenied(f"no caller may use {method.name}", reason="METHOD_NOT_ALLOWED")
        if not principal.allows(needed):
            raise PermissionDenied(
                f"this API key lacks the {needed} scope",
                reason="SCOPE_MISSING",
                metadata={"required_scope": str(needed)},
            )

    def _admitted(self, method: _Method, principal: Principal) -> str:
        """The method's scope, then a slot of the tenant; the tenant's label (entered)."""
        self._check_scope(method, principal)
        tenant = principal.tenant_id or "platform"
        self._tenant_calls.enter(tenant)
        _PRINCIPAL.set(principal)
        return tenant

    async def _authenticated(self, method: _Method, context: Any) -> str:
        """`_admitted` after a full authentication (a key not cached, or failing)."""
        authorization = _authorization(context)
        principal = await self._auth.authenticate(authorization, context.peer())
        return self._admitted(method, principal)

    async def _abort(self, error: BaseException, method: _Method, context: Any) -> None:
        """The status a client gets for `error` (raises AbortError)."""
        if isinstance(error, MagnetarError):
            await context.abort_with_status(to_grpc_status(error))
        log.exception("unexpected error in %s", method.name, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    def _observe(self, method: _Method, started: float, code: Any, tenant: str) -> None:
        if self._histogram is None:
            return
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        by_tenant = method.children.get(name)
        if by_tenant is None:
            by_tenant = method.children[name] = {}
        child = by_tenant.get(tenant)
        if child is None:
            child = by_tenant[tenant] = self._histogram.labels(method.name, name, tenant)
        child.observe(time.perf_counter() - started)

    @staticmethod
    def _code(context: Any, failed: bool) -> Any:
        code = context.code()
        if failed:
            return code or grpc.StatusCode.UNKNOWN
        return grpc.StatusCode.OK if code is None else code

    # -- handlers ----------------------------------------------------------------------

    def _wrap(self, handler: Any, name: str) -> Any:
        method = _Method(name, self._scopes.get(name))
        max_bytes = None if self._request_bytes is None else self._request_bytes(name)
        deserializer = _tolerant(handler.request_deserializer, max_bytes)
        serializer = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method), deserializer, serializer
            )
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                async with self._streaming(method, context):
                    async for response in inner_us(_decoded(request), context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: Any, context: Any) -> Any:
                async with self._streaming(method, context):
                    return await inner_su(_decoded_stream(requests), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            async with self._streaming(method, context):
                async for response in inner_ss(_decoded_stream(requests), context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)

    def _unary(self, inner: Callable[[Any, Any], Awaitable[Any]], method: _Method) -> Any:
        cached = self._auth.cached
        process_calls = self._process_calls
        tenant_calls = self._tenant_calls

        async def unary_unary(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            tenant = _UNAUTHENTICATED
            failed = False
            try:
                try:
                    request = _decoded(request)
                    process_calls.enter(_PROCESS)
                    try:
                        principal = cached(_authorization(context))
                        if principal is None:
                            admitted = await self._authenticated(method, context)
                        else:
                            admitted = self._admitted(method, principal)
                        tenant = admitted
                        try:
                            return await inner(request, context)
                        finally:
                            tenant_calls.leave(admitted)
                    finally:
                        process_calls.leave(_PROCESS)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await self._abort(error, method, context)
            except BaseException:
                failed = True
                raise
            finally:
                self._observe(method, started, self._code(context, failed), tenant)

        return unary_unary

    @asynccontextmanager
    async def _streaming(self, method: _Method, context: Any) -> AsyncIterator[None]:
        """What `_unary` does, around a stream; it also arms `reauthorize`."""
        started = time.perf_counter()
        tenant = _UNAUTHENTICATED
        failed = False
        try:
            try:
                self._process_calls.enter(_PROCESS)
                try:
                    admitted = await self._authenticated(method, context)
                    tenant = admitted
                    authorization, peer = _authorization(context), context.peer()

                    async def again() -> Principal:
                        principal = await self._auth.authenticate(authorization, peer)
                        self._check_scope(method, principal)
                        return principal

                    _REAUTHORIZE.set(again)
                    try:
                        yield
                    finally:
                        self._tenant_calls.leave(admitted)
                finally:
                    self._process_calls.leave(_PROCESS)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await self._abort(error, method, context)
        except BaseException:
            failed = True
            raise
        finally:
            self._observe(method, started, self._code(context, failed), tenant)
