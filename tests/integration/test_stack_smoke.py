"""Smoke proof that the local stack is real: functions worker and PostgreSQL roles."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import functions.smoke_probe
from magnetar import stack_layout
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from tests.integration.conftest import ScratchTenant

pytestmark = pytest.mark.integration

PROBE_FILE = Path(functions.smoke_probe.__file__)


def _function_config(tenant: ScratchTenant, name: str) -> dict[str, object]:
    return {
        "tenant": tenant.name,
        "namespace": "events",
        "name": name,
        "className": "smoke_probe.SmokeProbe",
        "runtime": "PYTHON",
        "inputs": [tenant.topic(f"{name}-in")],
        "output": tenant.topic(f"{name}-out"),
        "parallelism": 1,
        "autoAck": True,
    }


def _wait_running(
    admin: PulsarAdmin, tenant: ScratchTenant, name: str, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        status = admin.function_status(tenant.name, "events", name)
        if status.get("numRunning") == 1:
            return
        time.sleep(0.5)
    raise AssertionError(f"function {name} not running: {status}")


def _round_trip(settings: Settings, tenant: ScratchTenant, name: str) -> str:
    client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
    try:
        consumer = client.subscribe(tenant.topic(f"{name}-out"), "smoke")
        producer = client.create_producer(tenant.topic(f"{name}-in"))
        payload = f"ping-{uuid.uuid4().hex[:6]}"
        producer.send(payload.encode())
        message = consumer.receive(timeout_millis=30_000)
        consumer.acknowledge(message)
        return str(message.data().decode())
    finally:
        client.close()


def test_function_deployed_through_rest_runs_project_code(
    settings: Settings, pulsar_admin: PulsarAdmin, unique_tenant: ScratchTenant
) -> None:
    pulsar_admin.create_function(_function_config(unique_tenant, "probe-rest"), PROBE_FILE)
    _wait_running(pulsar_admin, unique_tenant, "probe-rest")

    reply = _round_trip(settings, unique_tenant, "probe-rest")

    assert reply.startswith("ping-")
    assert reply.endswith("|probe-rest")
    assert "|magnetar " in reply


def test_function_deployed_through_pulsar_admin_cli_runs(
    settings: Settings, pulsar_admin: PulsarAdmin, unique_tenant: ScratchTenant
) -> None:
    pulsar_layout, _ = stack_layout.layouts()
    config = _function_config(unique_tenant, "probe-cli")
    result = subprocess.run(
        [
            str(pulsar_layout.pulsar_admin),
            "functions",
            "create",
            "--py",
            str(PROBE_FILE),
            "--classname",
            str(config["className"]),
            "--tenant",
            unique_tenant.name,
            "--namespace",
            "events",
            "--name",
            "probe-cli",
            "--inputs",
            unique_tenant.topic("probe-cli-in"),
            "--output",
            unique_tenant.topic("probe-cli-out"),
        ],
        env={**os.environ, "PULSAR_CLIENT_CONF": str(pulsar_layout.client_conf)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _wait_running(pulsar_admin, unique_tenant, "probe-cli")

    assert _round_trip(settings, unique_tenant, "probe-cli").endswith("|probe-cli")


def test_application_role_runs_transactions_but_is_not_privileged(settings: Settings) -> None:
    with psycopg.connect(settings.database_url, connect_timeout=5, autocommit=True) as conn:
        role = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role is not None
        assert role[1:] == (False, False), (
            "the application role must be neither superuser nor BYPASSRLS"
        )
        with conn.transaction():
            conn.execute("SELECT set_config('magnetar.tenant', 'smoke', true)")
            scoped = conn.execute("SELECT current_setting('magnetar.tenant', true)").fetchone()
        assert scoped == ("smoke",)
        # set per transaction, never per session: gone once the transaction ends
        after = conn.execute("SELECT current_setting('magnetar.tenant', true)").fetchone()
        assert after in ((None,), ("",))
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'tenants'"
        ).fetchone()
        assert owner is not None and owner[0] != role[0], "the application role must not own tables"
