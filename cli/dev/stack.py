"""`magnetar dev up|down|status`: the whole local stack in one place."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli.dev import gateway_process, postgres, pulsar
from magnetar import processes
from magnetar.db import migrate
from magnetar.health_probe import serving
from magnetar.private_files import private_folder, write_private
from magnetar.settings import Settings, magnetar_home
from magnetar.stack_layout import layouts


@dataclass
class UpReport:
    """How long each part took to become ready, for the user and for the issue notes."""

    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _write_state(home: Path, values: dict[str, str]) -> None:
    state_file = home / "dev.json"
    current = json.loads(state_file.read_text()) if state_file.exists() else {}
    current.update(values)
    write_private(state_file, json.dumps(current, indent=2) + "\n")


def _database_url_file(home: Path) -> Path:
    """The app role's URL in a private file, for the materialize Function on this host."""
    private_folder(home / "secrets")
    return write_private(home / "secrets" / "database_url", Settings.load(home).database_url + "\n")


def up(
    home: Path | None = None, *, with_pulsar: bool = True, with_gateway: bool = True
) -> UpReport:
    home = home or magnetar_home()
    home.mkdir(parents=True, exist_ok=True)
    pulsar_layout, pg_layout = layouts(home)
    report = UpReport()

    settings = Settings.load(home)
    external_db = "MAGNETAR_DATABASE_URL" in os.environ and postgres.answers(settings.database_url)
    # Everything that can be missing is checked before anything is downloaded or started.
    if with_pulsar:
        pulsar.preflight(pulsar_layout)
    if not external_db:
        postgres.preflight(pg_layout)
    if with_pulsar:
        began = time.monotonic()
        pulsar.fetch_distribution(pulsar_layout)
        report.seconds["pulsar download/unpack"] = time.monotonic() - began
        if processes.read_pid(pulsar_layout.pid_file) is None:
            pulsar.require_ports()

    if external_db:
        report.seconds["postgres (external)"] = 0.0
    else:
        report.seconds["postgres"] = postgres.start(pg_layout)
        _write_state(home, postgres.urls(pg_layout))
    _write_state(home, {"functions_database_url_file": str(_database_url_file(home))})
    settings = Settings.load(home)
    began = time.monotonic()
    migrate.upgrade(settings.database_owner_url)
    report.seconds["migrations"] = time.monotonic() - began

    if with_pulsar:
        report.seconds["pulsar standalone + functions worker"] = pulsar.start(pulsar_layout)
        _write_state(
            home,
            {
                "pulsar_service_url": f"pulsar://127.0.0.1:{pulsar.BROKER_PORT}",
                "pulsar_admin_url": f"http://127.0.0.1:{pulsar.WEB_PORT}",
                "pulsar_admin_token_file": str(pulsar_layout.superuser_token),
                "pulsar_token_secret_key_file": str(pulsar_layout.secret_key),
                "pulsar_state_storage_url": pulsar.STATE_STORAGE_URL,
            },
        )
    if not Settings.load(home).admin_api_key:
        # The platform admin key of this machine's stack; production takes it from a Secret.
        _write_state(home, {"admin_api_key": f"mga_{secrets.token_urlsafe(32)}"})
    if with_pulsar and with_gateway:
        settings = Settings.load(home)
        report.seconds["gateway"] = gateway_process.start(
            home, settings.grpc_host, settings.grpc_port
        )
        # The admin plane (TenantService) in a process of its own, as in Kubernetes.
        report.seconds["admin"] = gateway_process.start(
            home, settings.admin_grpc_host, settings.admin_grpc_port, component="admin"
        )
    return report


def down(home: Path | None = None) -> dict[str, bool]:
    home = home or magnetar_home()
    pulsar_layout, pg_layout = layouts(home)
    return {
        "admin": gateway_process.stop(home, "admin"),
        "gateway": gateway_process.stop(home),
        "pulsar": pulsar.stop(pulsar_layout),
        "postgres": postgres.stop(pg_layout),
    }


def status(home: Path | None = None) -> dict[str, str]:
    home = home or magnetar_home()
    pulsar_layout, pg_layout = layouts(home)
    report = pulsar.health(pulsar_layout)
    report["postgres"] = "ready" if postgres.running(pg_layout) else "down"
    settings = Settings.load(home)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    report["gateway"] = "ready" if serving(address) else "down"
    admin = f"{settings.admin_grpc_host}:{settings.admin_grpc_port}"
    report["admin"] = "ready" if serving(admin) else "down"
    return report
