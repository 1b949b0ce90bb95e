"""Pulsar client construction with token authentication."""

from __future__ import annotations

import pulsar


def quiet_logger() -> pulsar.ConsoleLogger:
    """Warnings and errors only, filtered in C++. The client logs every lookup, producer and
    reconnect at INFO, which buries a command's own output; and a Python `logging.Logger`
    would take the GIL for every debug line (two per message sent) only to drop it."""
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


def make_client(service_url: str, token: str = "", **options: object) -> pulsar.Client:
    """A client for `service_url`; `token` is a role token (tenant role or superuser)."""
    auth = pulsar.AuthenticationToken(token) if token else None
    options.setdefault("logger", quiet_logger())
    return pulsar.Client(
        service_url,
        authentication=auth,
        operation_timeout_seconds=10,
        connection_timeout_ms=5000,
        **options,
    )
