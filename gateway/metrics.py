"""The gateway's Prometheus endpoint (the RPC metric is timed by `gateway.interceptors`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    """Expose `registry` on http://host:port/metrics for Prometheus (a daemon thread)."""
    start_http_server(port, addr=host, registry=registry)
