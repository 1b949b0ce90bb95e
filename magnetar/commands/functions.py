"""`magnetar functions deploy|render|status`: a tenant's pipeline Functions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from functions.deployment import STAGES, PipelineOptions, package_file, pipeline
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.topics import TenantTopics
from tenants.functions_deploy import deploy_pipeline, wait_running


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("functions", help="deploy and inspect a tenant's Functions")
    commands = group.add_subparsers(dest="functions_command", required=True)
    deploy = commands.add_parser("deploy", help="create or update dedupe, enrich, materialize")
    deploy.add_argument("--tenant", required=True, help="tenant slug (Pulsar tenant)")
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


def _deploy(args: argparse.Namespace) -> int:
    settings = Settings.load()
    with _admin(settings) as admin:
        configs = deploy_pipeline(admin, args.tenant, _options(settings, args.parallelism))
        running = wait_running(admin, args.tenant, configs)
    for stage, count in running.items():
        print(f"{args.tenant}/events/{stage}: {count} running")
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
