"""`magnetar functions deploy|render|status`: a tenant's pipeline Functions."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from functions.deployment import CLASSES, STAGES, PipelineOptions, package_file, pipeline
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings, magnetar_home
from magnetar.topics import TenantTopics
from tenants.functions_deploy import deploy_pipeline, wait_running


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("functions", help="deploy and inspect a tenant's Functions")
    commands = group.add_subparsers(dest="functions_command", required=True)
    deploy = commands.add_parser("deploy", help="create or update the pipeline Function")
    target = deploy.add_mutually_exclusive_group(required=True)
    target.add_argument("--tenant", help="tenant slug (Pulsar tenant)")
    target.add_argument("--all", action="store_true", help="every tenant registered in PostgreSQL")
    deploy.add_argument("--parallelism", type=int, default=1, help="instances per Function")
    deploy.set_defaults(handler=_deploy)
    render = commands.add_parser(
        "render", help="write the configs as YAML for `bin/pulsar-admin functions create`"
    )
    render.add_argument("--tenant", required=True, help="tenant slug (Pulsar tenant)")
    render.add_argument("--out", type=Path, default=Path("functions/config"), help="folder")
    render.add_argument(
        "--database-url-file",
        help="file on the worker host with the app role's database URL "
        "(default: this machine's, from `magnetar dev up`)",
    )
    render.set_defaults(handler=_render)
    package = commands.add_parser(
        "package", help="write the files the worker receives, with a manifest of their hashes"
    )
    package.add_argument("--out", type=Path, help="folder (default: <MAGNETAR_HOME>/functions)")
    package.set_defaults(handler=_package)
    status = commands.add_parser("status", help="instances running per Function")
    status.add_argument("--tenant", required=True, help="tenant slug (Pulsar tenant)")
    status.set_defaults(handler=_status)


def _options(
    settings: Settings, parallelism: int = 1, database_url_file: str | None = None
) -> PipelineOptions:
    return PipelineOptions(
        parallelism=parallelism,
        database_url_file=database_url_file or settings.functions_database_url_file,
    )


def _admin(settings: Settings) -> PulsarAdmin:
    return PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token)


def registered_tenants(database_url: str) -> list[str]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return [row[0] for row in conn.execute("SELECT tenant_id FROM tenants ORDER BY 1")]


def _deploy(args: argparse.Namespace) -> int:
    settings = Settings.load()
    tenants = registered_tenants(settings.database_url) if args.all else [args.tenant]
    with _admin(settings) as admin:
        for tenant in tenants:
            configs = deploy_pipeline(admin, tenant, _options(settings, args.parallelism))
            for stage, count in wait_running(admin, tenant, configs).items():
                print(f"{tenant}/events/{stage}: {count} running")
    return 0


def _package(args: argparse.Namespace) -> int:
    """The stage modules as uploaded, byte for byte, and their SHA-256 (reproducible: the
    same sources give the same folder, whatever the clock)."""
    out = args.out or magnetar_home() / "functions"
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for stage in STAGES:
        source = package_file(stage).read_bytes()
        (out / package_file(stage).name).write_bytes(source)
        manifest[stage] = {
            "file": package_file(stage).name,
            "class": CLASSES[stage],
            "sha256": hashlib.sha256(source).hexdigest(),
        }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(out)
    return 0


def render_yaml(config: dict[str, Any]) -> str:
    """The config as YAML: JSON is YAML, and keeps this free of a YAML dependency."""
    return (
        "# Rendered by `magnetar functions render`; do not edit by hand.\n"
        + json.dumps(config, indent=2, sort_keys=True)
        + "\n"
    )


def _render(args: argparse.Namespace) -> int:
    settings = Settings.load()
    args.out.mkdir(parents=True, exist_ok=True)
    options = _options(settings, database_url_file=args.database_url_file)
    for stage, config in pipeline(TenantTopics(args.tenant), options).items():
        # bin/pulsar-admin changes to its own folder before reading `py`: an absolute path.
        config["py"] = str(package_file(stage))
        (args.out / f"{stage}.yaml").write_text(render_yaml(config))
        print(args.out / f"{stage}.yaml")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = Settings.load()
    table = Table(title=f"functions of {args.tenant}")
    for column in ("function", "running", "received", "processed", "user errors", "system errors"):
        table.add_column(column, justify="left" if column == "function" else "right")
    with _admin(settings) as admin:
        for stage in STAGES:
            status = admin.function_status(args.tenant, "events", stage)
            instances = status.get("instances", [])
            totals = {
                key: sum(int(i.get("status", {}).get(key, 0)) for i in instances)
                for key in (
                    "numReceived",
                    "numSuccessfullyProcessed",
                    "numUserExceptions",
                    "numSystemExceptions",
                )
            }
            table.add_row(
                stage,
                f"{status.get('numRunning', 0)}/{status.get('numInstances', 0)}",
                *(str(v) for v in totals.values()),
            )
    Console().print(table)
    return 0
