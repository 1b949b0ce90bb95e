"""Process settings: environment variables over the local stack's state file over defaults.

`magnetar dev up` writes the addresses and credentials of the stack it started into
`<home>/dev.json`; every other command reads them from there unless an environment
variable (``MAGNETAR_*``) says otherwise. That keeps one source of truth on a developer
machine while a Kubernetes pod is configured by environment alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from magnetar.problems import EnvironmentProblem

PULSAR_VERSION = "4.0.8"
# Values of `Settings.producer_credentials`.
PRODUCER_CREDENTIALS = ("stored", "superuser")


def magnetar_home() -> Path:
    """Folder holding the local stack: downloads, data, logs, generated credentials."""
    return Path(os.environ.get("MAGNETAR_HOME", Path.cwd() / ".magnetar")).resolve()


@dataclass(frozen=True)
class Settings:
    """Everything a Magnetar process needs to reach its dependencies."""

    pulsar_service_url: str = "pulsar://127.0.0.1:6650"
    pulsar_admin_url: str = "http://127.0.0.1:8080"
    # Path of a file holding the Pulsar superuser token (admin plane and dev tooling only).
    pulsar_admin_token_file: str = ""
    # Path of the broker's HS256 token secret key: the admin plane signs each tenant's
    # producer token with it at onboarding (tenants.credentials). Never the public gateway's.
    pulsar_token_secret_key_file: str = ""
    # What the public gateway's producers authenticate with: "stored", each tenant's own
    # role token as the admin plane stored it (gateway.producer_tokens); or "superuser",
    # the superuser token for every tenant (an explicit opt-out for a Pulsar without token
    # signing; docs/kubernetes.md, "Topology").
    producer_credentials: str = "stored"
    # The functions worker's state storage (bk://...), where onboarding prepares the
    # tenant's function state namespace and offboarding removes it; empty: not used.
    pulsar_state_storage_url: str = ""
    # Application role: neither owner nor BYPASSRLS; what the gateway and functions use.
    database_url: str = "postgresql://magnetar_app@127.0.0.1:55432/magnetar"
    # Owner role: runs migrations and tenant purges.
    database_owner_url: str = "postgresql://magnetar_owner@127.0.0.1:55432/magnetar"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # The HTTP/JSON door (gateway/http_door.py, docs/clients.md) beside gRPC.
    http_host: str = "127.0.0.1"
    http_port: int = 8090
    # The admin plane's gRPC listener (TenantService; `magnetar admin serve`), apart from the
    # public gateway's and never behind its Ingress.
    admin_grpc_host: str = "127.0.0.1"
    admin_grpc_port: int = 50052
    # /metrics binds its own address, never grpc_host's: a gateway that serves gRPC on every
    # interface keeps its metrics (tenant names, call rates) on loopback unless told otherwise.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # The admin plane's /metrics (on metrics_host): the pipeline's metrics, which need the
    # Pulsar superuser token only the admin plane holds (docs/observability.md).
    admin_metrics_port: int = 9465
    # A file holding `database_url`, read by the materialize Function on the worker host.
    functions_database_url_file: str = ""
    # Platform admin API key (plain text only in the local state file / a Secret).
    admin_api_key: str = ""
    pulsar_version: str = PULSAR_VERSION
    # How long a gateway thread may hold the GIL while others wait (CPython's default is
    # 5,000 µs): the event loop, the serving threads and the Pulsar client's callbacks take
    # turns, and every wait for a turn lands in some call's latency (BENCHMARKS.md).
    gil_switch_interval_us: int = 500
    # Gateway replicas that share each tenant's ingest quota: each takes 1/replicas of it.
    # Set by the Helm chart (docs/tenants.md, "Quotas and replicas").
    gateway_replicas: int = 1

    def __post_init__(self) -> None:
        # Checked here, not where used: a gateway pod with a bad value must fail at start
        # with the variable's name, not later inside grpc or `sys.setswitchinterval`.
        for name in (
            "grpc_port",
            "http_port",
            "admin_grpc_port",
            "metrics_port",
            "admin_metrics_port",
        ):
            if not 0 <= getattr(self, name) <= 65_535:
                raise _bad(name, getattr(self, name), "a port number from 0 to 65535")
        if self.gil_switch_interval_us <= 0:
            raise _bad("gil_switch_interval_us", self.gil_switch_interval_us, "a number above 0")
        if self.producer_credentials not in PRODUCER_CREDENTIALS:
            raise _bad(
                "producer_credentials", self.producer_credentials, " or ".join(PRODUCER_CREDENTIALS)
            )
        if self.gateway_replicas <= 0:
            raise _bad("gateway_replicas", self.gateway_replicas, "a number above 0")

    @property
    def pulsar_admin_token(self) -> str:
        if not self.pulsar_admin_token_file:
            return ""
        return Path(self.pulsar_admin_token_file).read_text().strip()

    @classmethod
    def load(cls, home: Path | None = None) -> Settings:
        """Defaults, then `<home>/dev.json`, then ``MAGNETAR_<FIELD>`` environment variables."""
        settings = cls()
        state_file = (home or magnetar_home()) / "dev.json"
        if state_file.exists():
            settings = settings.merged(json.loads(state_file.read_text()))
        from_env = {
            f.name: os.environ[f"MAGNETAR_{f.name.upper()}"]
            for f in fields(cls)
            if f"MAGNETAR_{f.name.upper()}" in os.environ
        }
        return settings.merged(from_env)

    def merged(self, values: dict[str, Any]) -> Settings:
        known = {f.name: f for f in fields(self)}
        typed: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                continue
            if known[name].type == "int":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise _bad(name, value, "a whole number") from None
            typed[name] = value
        return replace(self, **typed)


def _bad(name: str, value: object, expected: str) -> EnvironmentProblem:
    """A setting that cannot work, named as a user sets it."""
    return EnvironmentProblem(
        f"setting {name} is {value!r}, not {expected}",
        f"set MAGNETAR_{name.upper()} to {expected} (or unset it to use the default), "
        "or correct it in the stack's dev.json",
    )
