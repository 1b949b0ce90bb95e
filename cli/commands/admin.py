"""`magnetar admin serve`: the admin plane (TenantService) until SIGTERM.

Its own process and listener, never the public gateway's: it holds the Pulsar superuser
token, the broker's token signing key and the platform admin key (gateway.admin_server).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from magnetar.settings import Settings


def register(subparsers: Any) -> None:
    admin = subparsers.add_parser("admin", help="the admin plane: TenantService")
    commands = admin.add_subparsers(dest="admin_command", required=True)
    serve = commands.add_parser("serve", help="serve TenantService until SIGTERM")
    serve.add_argument("--host", help="bind address (default: settings admin_grpc_host)")
    serve.add_argument("--port", type=int, help="port (default: settings admin_grpc_port, 50052)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    # Imported here so that `magnetar --help` does not load gRPC and Pulsar.
    from gateway.admin_server import serve_admin

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["admin_grpc_host"] = args.host
    if args.port is not None:
        overrides["admin_grpc_port"] = args.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve_admin(Settings.load().merged(overrides)))
    return 0
