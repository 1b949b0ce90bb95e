"""`magnetar keys create|list|revoke`: a tenant's API keys, stored hashed in PostgreSQL."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import parse_scopes
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.errors import MagnetarError
from magnetar.settings import Settings


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="create, list and revoke a tenant's API keys")
    commands = keys.add_subparsers(dest="keys_command", required=True)

    create = commands.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--tenant", required=True, help="the tenant's id (slug)")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help="ingest, read or manage (catalog writes, user erasure); repeat for several",
    )
    create.add_argument("--description", default="", help="a note for humans")
    create.set_defaults(handler=_create)

    listing = commands.add_parser("list", help="list a tenant's keys (never their secrets)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(handler=_list)

    revoke = commands.add_parser("revoke", help="revoke a key; the gateway refuses it in seconds")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_revoke)


def _store() -> ApiKeyStore:
    return ApiKeyStore(make_sessionmaker(make_engine(Settings.load().database_url, pool_size=1)))


def _fail(error: MagnetarError) -> int:
    print(f"magnetar keys: error: {error.message}", file=sys.stderr)
    return 1


def _create(args: argparse.Namespace) -> int:
    try:
        scopes = parse_scopes(args.scope)
        minted, stored = _store().create(args.tenant, scopes, args.description)
    except MagnetarError as error:
        return _fail(error)
    print(
        f"key {stored.key_id} for tenant {stored.tenant_id}, scopes "
        f"{','.join(sorted(stored.scopes))}; the secret is shown only now:",
        file=sys.stderr,
    )
    # The secret alone on stdout, so scripts can capture it: KEY=$(magnetar keys create ...)
    print(minted.secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        keys = _store().list(args.tenant, include_revoked=args.all)
    except MagnetarError as error:
        return _fail(error)
    table = Table(title=f"API keys of {args.tenant}")
    for column in ("key id", "scopes", "created", "revoked", "description"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.key_id,
            ",".join(sorted(key.scopes)),
            f"{key.created_at:%Y-%m-%d %H:%M:%S}",
            "" if key.revoked_at is None else f"{key.revoked_at:%Y-%m-%d %H:%M:%S}",
            key.description,
        )
    Console().print(table)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        key = _store().revoke(args.tenant, args.key_id)
    except MagnetarError as error:
        return _fail(error)
    print(f"key {key.key_id} of {key.tenant_id} revoked at {key.revoked_at}")
    return 0
