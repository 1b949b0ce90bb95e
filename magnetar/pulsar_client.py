"""Pulsar client construction with token authentication."""

from __future__ import annotations

import pulsar


def make_client(service_url: str, token: str = "", **options: object) -> pulsar.Client:
    """A client for `service_url`; `token` is a role token (tenant role or superuser)."""
    auth = pulsar.AuthenticationToken(token) if token else None
    # The C++ client logs every lookup and producer at INFO to stdout, which buried the
    # demo's own output; warnings and errors still show.
    options.setdefault("logger", pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    return pulsar.Client(
        service_url,
        authentication=auth,
        operation_timeout_seconds=10,
        connection_timeout_ms=5000,
        **options,
    )
