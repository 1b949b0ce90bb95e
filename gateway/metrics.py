"""The RPC metrics interceptor and the gateway's Prometheus endpoint."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from gateway.interceptors import _AroundInterceptor, current_principal


def _tenant_label() -> str:
    try:
        return current_principal().tenant_id or "platform"
    except LookupError:
        return "unauthenticated"


class MetricsInterceptor(_AroundInterceptor):
    """Times every call (outermost, so auth failures and errors are counted too)."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    @asynccontextmanager
    async def around(
        self, method: str, metadata: Mapping[str, str], context: Any
    ) -> AsyncIterator[None]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            if code is grpc.StatusCode.OK and context.code() not in (None, grpc.StatusCode.OK):
                code = context.code()
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            self._histogram.labels(method, name, _tenant_label()).observe(
                time.perf_counter() - started
            )


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    """Expose `registry` on http://host:port/metrics for Prometheus (a daemon thread)."""
    start_http_server(port, addr=host, registry=registry)
