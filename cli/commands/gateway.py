"""`magnetar gateway serve`: run the gRPC gateway until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from magnetar.settings import Settings


def register(subparsers: Any) -> None:
    gateway = subparsers.add_parser("gateway", help="the gRPC gateway")
    commands = gateway.add_subparsers(dest="gateway_command", required=True)
    serve = commands.add_parser("serve", help="serve until SIGTERM, then drain gracefully")
    serve.add_argument("--host", help="bind address (default: settings grpc_host)")
    serve.add_argument("--port", type=int, help="port (default: settings grpc_port, 50051)")
    serve.add_argument(
        "--workers",
        type=int,
        help="gateway processes sharing the port with SO_REUSEPORT (default: the cores; "
        "worker i serves /metrics on metrics_port + i; docs/serving.md)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    # Imported here so that `magnetar --help` does not load gRPC and Pulsar.
    from gateway.server import serve

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["grpc_host"] = args.host
    if args.port is not None:
        overrides["grpc_port"] = args.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.load().merged(overrides)
    from gateway.workers import default_workers, run_workers

    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    if workers > 1:
        # The start checks once, here: a refusal is one line and exit 2, not N workers'.
        from magnetar.db.app_role import require_app_role

        require_app_role(settings.database_url)
        return run_workers(settings, workers)
    asyncio.run(serve(settings))
    return 0
