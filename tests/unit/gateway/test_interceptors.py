"""What an anonymous caller meets before authentication: the request size of its method and
the process's bound on calls in progress; what a known key's call costs and records (a
loopback gRPC server, fake key store)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Histogram

from gateway.auth import Authenticator
from gateway.interceptors import GatewayInterceptor
from gateway.limits import ConcurrencyLimiter
from gateway.method_scopes import method_scopes
from gateway.request_sizes import DEFAULT_BYTES, LARGER_METHODS, max_request_bytes
from magnetar.api_key_store import StoredKey
from magnetar.api_keys import Principal, Scope
from magnetar.observability.metrics import rpc_histogram
from tests.unit.gateway.test_auth import FakeKeys

ADMIN_KEY = "test-admin-key"
DELETE_USER = "/magnetar.v1.UserService/DeleteUser"
RECOMMEND = "/magnetar.v1.PersonalizationService/Recommend"
GET_TENANT = "/magnetar.v1.TenantService/GetTenant"


class NoKeys:
    lookups = 0

    def find(self, tenant_id: str, key_id: str) -> StoredKey | None:
        self.lookups += 1
        return None


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def serve(
    test: Callable[[grpc.aio.Channel, asyncio.Event, NoKeys], Coroutine[Any, Any, None]],
    *,
    max_calls: int = 100,
    keys: Any = None,
    authenticator: Authenticator | None = None,
    histogram: Histogram | None = None,
) -> None:
    keys = keys or NoKeys()

    async def run() -> None:
        release = asyncio.Event()

        async def echo(request: bytes, context: Any) -> bytes:
            await release.wait()
            return b"ok"

        server = grpc.aio.server(
            interceptors=[
                GatewayInterceptor(
                    authenticator or Authenticator(keys, ADMIN_KEY),
                    method_scopes(),
                    process_calls=ConcurrencyLimiter(
                        max_calls, holder="this gateway", reason="GATEWAY_BUSY"
                    ),
                    tenant_calls=ConcurrencyLimiter(100),
                    request_bytes=max_request_bytes,
                    histogram=histogram,
                )
            ]
        )
        for name in (DELETE_USER, RECOMMEND, GET_TENANT):
            _, service, method = name.split("/")
            handler = grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=bytes, response_serializer=bytes
            )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {method: handler}),)
            )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await asyncio.wait_for(test(channel, release, keys), 30)
        finally:
            release.set()
            await server.stop(0)

    asyncio.run(run())


def call(channel: grpc.aio.Channel, method: str, size: int, key: str | None = None) -> Any:
    stub = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
    metadata = [("authorization", f"Bearer {key}")] if key else None
    return stub(b"x" * size, metadata=metadata, timeout=20)


def test_a_request_over_its_methods_bound_is_refused_before_authentication() -> None:
    async def test(channel: grpc.aio.Channel, release: asyncio.Event, keys: NoKeys) -> None:
        release.set()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(channel, DELETE_USER, DEFAULT_BYTES + 1, "mgk.acme.0123456789abcdef.x")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(refused.value)
        assert info.reason == "REQUEST_TOO_LARGE"
        assert info.metadata["max_request_bytes"] == str(DEFAULT_BYTES)
        # Recommend may carry 1,000 excluded ids: the same size reaches authentication.
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await call(channel, RECOMMEND, DEFAULT_BYTES + 1)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert keys.lookups == 0

    serve(test)


def test_calls_in_progress_in_the_process_are_bounded_before_authentication() -> None:
    async def test(channel: grpc.aio.Channel, release: asyncio.Event, keys: NoKeys) -> None:
        held = [asyncio.ensure_future(call(channel, GET_TENANT, 1, ADMIN_KEY)) for _ in range(2)]
        await asyncio.sleep(0.5)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(channel, DELETE_USER, 1)  # no key: refused before auth says so
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(refused.value).reason == "GATEWAY_BUSY"
        release.set()
        assert await asyncio.gather(*held) == [b"ok", b"ok"]

    serve(test, max_calls=2)


def test_every_method_with_a_larger_bound_exists() -> None:
    assert set(LARGER_METHODS) <= set(method_scopes())


class CountingAuthenticator(Authenticator):
    full = 0

    async def authenticate(self, authorization: str | None, peer: str | None = None) -> Principal:
        self.full += 1
        return await super().authenticate(authorization, peer)


def test_a_known_keys_calls_skip_the_lookup_path_and_are_timed_by_method_code_tenant() -> None:
    keys = FakeKeys()
    secret = keys.add("acme", {Scope.READ})
    authenticator = CountingAuthenticator(keys, ADMIN_KEY)
    registry = CollectorRegistry()

    async def test(channel: grpc.aio.Channel, release: asyncio.Event, unused: NoKeys) -> None:
        release.set()
        for _ in range(3):
            assert await call(channel, RECOMMEND, 1, secret) == b"ok"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(channel, DELETE_USER, 1, secret)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(refused.value).metadata["required_scope"] == "manage"

    serve(test, keys=keys, authenticator=authenticator, histogram=rpc_histogram(registry))
    # One full authentication (the first call's lookup); the others from the key cache.
    assert authenticator.full == 1
    assert keys.lookups == 1

    def count(method: str, code: str, tenant: str) -> float | None:
        labels = {"method": method, "code": code, "tenant": tenant}
        return registry.get_sample_value("magnetar_rpc_duration_seconds_count", labels)

    assert count(RECOMMEND, "OK", "acme") == 3
    # Refused by its scope: no principal was set, as before the change.
    assert count(DELETE_USER, "PERMISSION_DENIED", "unauthenticated") == 1
