"""`magnetar tenants create|list|show|update|delete|issue-producer-tokens`: TenantService's
operations from a shell.

The CLI runs the same domain code as the admin plane (`tenants.admin.TenantAdmin`) against
the configured Pulsar and PostgreSQL, with the admin plane's credentials, so it works with
no server up. Keys are `magnetar keys`. A tenant deleted here (or through the admin plane)
has its public gateway producers cut off by Pulsar when the namespaces go.
`issue-producer-tokens` is the upgrade step that gives tenants onboarded before the admin
plane existed the producer token the public gateway now reads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from magnetar.errors import InvalidArgument, MagnetarError
from tenants.model import IssuedKey, TenantChanges, TenantRecord, TenantView
from tenants.plans import PLANS, QUOTA_FIELDS
from tenants.wiring import tenant_admin


def _quota(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if name not in QUOTA_FIELDS or not value.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected <quota>=<number> with quota one of {', '.join(QUOTA_FIELDS)}"
        )
    return name, int(value)


def register(subparsers: Any) -> None:
    tenants = subparsers.add_parser("tenants", help="onboard, inspect, change and offboard tenants")
    commands = tenants.add_subparsers(dest="tenants_command", required=True)
    quota_help = f"override a quota, e.g. ingest_events_per_second=500 ({', '.join(QUOTA_FIELDS)})"

    create = commands.add_parser("create", help="onboard a tenant; prints its first keys once")
    create.add_argument("tenant_id", help="the slug: 3-40 of [a-z0-9-], starting with a letter")
    create.add_argument("--display-name", required=True)
    create.add_argument("--plan", default="", help=f"one of {', '.join(PLANS)} (default free)")
    create.add_argument("--quota", type=_quota, action="append", default=[], help=quota_help)
    create.set_defaults(handler=_create)

    listing = commands.add_parser("list", help="list tenants in id order")
    listing.add_argument("--page-size", type=int, default=0)
    listing.add_argument("--page-token", default="")
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="a tenant's steps, quotas, functions and backlogs")
    show.add_argument("tenant_id")
    show.set_defaults(handler=_show)

    update = commands.add_parser("update", help="change display name, plan or quotas")
    update.add_argument("tenant_id")
    update.add_argument("--display-name")
    update.add_argument("--plan", help="a new plan brings its quotas unless --quota is given")
    update.add_argument("--quota", type=_quota, action="append", default=[], help=quota_help)
    origins = update.add_mutually_exclusive_group()
    origins.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origins",
        metavar="ORIGIN",
        help="a web origin whose pages may call the HTTP door, e.g. https://shop.example.com; "
        "repeat for several: the list given replaces the tenant's",
    )
    origins.add_argument(
        "--no-allowed-origins",
        action="store_const",
        const=[],
        dest="allowed_origins",
        help="let no cross-origin page call the HTTP door",
    )
    update.set_defaults(handler=_update)

    delete = commands.add_parser("delete", help="offboard: functions, topics, namespaces, rows")
    delete.add_argument("tenant_id")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_delete)

    issue = commands.add_parser(
        "issue-producer-tokens",
        help="sign and store every tenant's Pulsar producer token (once, after upgrading)",
    )
    issue.set_defaults(handler=_issue_producer_tokens)


def _fail(error: MagnetarError) -> int:
    print(f"magnetar tenants: error: {error.message}", file=sys.stderr)
    if isinstance(error, InvalidArgument):
        for violation in error.violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
    return 1


def _record_table(record: TenantRecord) -> Table:
    spec = record.spec
    table = Table(title=f"tenant {spec.tenant_id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("display name", spec.display_name)
    table.add_row("plan", spec.plan or "(none: created before plans)")
    table.add_row("state", record.state.value)
    table.add_row("created", f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC")
    for name, value in (spec.quotas.as_dict() if spec.quotas else {}).items():
        table.add_row(name, f"{value:,}")
    table.add_row("allowed origins", " ".join(spec.allowed_origins) or "(none)")
    for step in record.steps:
        table.add_row(f"step {step.name}", f"{step.state.value} {step.message}".strip())
    return table


def _view_tables(view: TenantView) -> list[Table]:
    functions = Table(title="functions")
    for column in ("function", "running", "instances", "last error"):
        functions.add_column(column)
    for f in view.functions:
        functions.add_row(f.name, str(f.running_instances), str(f.instances), f.last_error)
    backlogs = Table(title="backlog per subscription")
    for column in ("topic", "subscription", "backlog"):
        backlogs.add_column(column)
    for b in view.backlogs:
        backlogs.add_row(b.topic, b.subscription, f"{b.backlog:,}")
    return [_record_table(view.record), functions, backlogs]


def _print_key(label: str, key: IssuedKey) -> None:
    print(f"{label} key {key.stored.key_id} (shown only now):", file=sys.stderr)
    # The secrets alone on stdout as NAME=value lines, for scripts.
    print(f"{label.upper()}_KEY={key.minted.secret}")


def _create(args: argparse.Namespace) -> int:
    try:
        with tenant_admin() as admin:
            onboarded = admin.create(args.tenant_id, args.display_name, args.plan, dict(args.quota))
    except MagnetarError as error:
        return _fail(error)
    Console(stderr=True).print(_record_table(onboarded.record))
    _print_key("ingest", onboarded.ingest_key)
    _print_key("read", onboarded.read_key)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        with tenant_admin() as admin:
            page = admin.list_tenants(args.page_size, args.page_token)
    except MagnetarError as error:
        return _fail(error)
    table = Table(title="tenants")
    for column in ("tenant", "display name", "plan", "state", "created"):
        table.add_column(column)
    for record in page.tenants:
        table.add_row(
            record.tenant_id,
            record.spec.display_name,
            record.spec.plan,
            record.state.value,
            f"{record.created_at:%Y-%m-%d %H:%M:%S}",
        )
    Console().print(table)
    if page.next_page_token:
        print(f"next page: --page-token {page.next_page_token}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        with tenant_admin() as admin:
            view = admin.get(args.tenant_id)
    except MagnetarError as error:
        return _fail(error)
    console = Console()
    for table in _view_tables(view):
        console.print(table)
    return 0


def _update(args: argparse.Namespace) -> int:
    paths = [f"quotas.{name}" for name, _ in args.quota]
    if args.display_name is not None:
        paths.append("display_name")
    if args.plan is not None:
        paths.append("plan")
    if args.allowed_origins is not None:
        paths.append("allowed_origins")
    changes = TenantChanges(
        paths=paths,
        display_name=args.display_name or "",
        plan=args.plan or "",
        quotas=dict(args.quota),
        allowed_origins=args.allowed_origins or (),
    )
    try:
        with tenant_admin() as admin:
            record = admin.update(args.tenant_id, changes)
    except MagnetarError as error:
        return _fail(error)
    Console().print(_record_table(record))
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.yes:
        answer = input(f"Delete tenant {args.tenant_id} and all its data? Type its id: ")
        if answer.strip() != args.tenant_id:
            print("not deleted", file=sys.stderr)
            return 1
    try:
        with tenant_admin() as admin:
            removed = admin.delete(args.tenant_id)
    except MagnetarError as error:
        return _fail(error)
    for line in removed:
        print(f"removed {line}")
    return 0


def _issue_producer_tokens(args: argparse.Namespace) -> int:
    try:
        with tenant_admin() as admin:
            issued = admin.issue_producer_tokens()
    except MagnetarError as error:
        return _fail(error)
    print(f"producer tokens stored for {len(issued)} tenant(s)", file=sys.stderr)
    for tenant_id in issued:
        print(tenant_id)
    return 0
