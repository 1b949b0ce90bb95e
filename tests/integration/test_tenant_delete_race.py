"""Create, use and delete tenants in a loop on the real broker: every delete must settle.

Deleting a tenant whose namespace was just in use races with the broker's own clean-up of
its metadata (500 "Directory not empty"); `PulsarAdmin` retries that answer and then checks
the tenant is gone (unit-tested in tests/unit/test_pulsar_admin_delete.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import functions.smoke_probe
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.pulsar_client import make_client
from magnetar.settings import Settings
from tests.integration.conftest import unique_name

pytestmark = pytest.mark.integration

ROUNDS = 6
# Rounds that also run a Function in the tenant, as onboarded tenants do.
WITH_FUNCTION = {0, 3}


def _start_probe(admin: PulsarAdmin, tenant: str) -> None:
    config = {
        "tenant": tenant,
        "namespace": "events",
        "name": "probe",
        "className": "smoke_probe.SmokeProbe",
        "runtime": "PYTHON",
        "inputs": [f"persistent://{tenant}/events/probe-in"],
        "output": f"persistent://{tenant}/events/probe-out",
        "parallelism": 1,
        "autoAck": True,
    }
    admin.create_function(config, Path(functions.smoke_probe.__file__))
    deadline = time.monotonic() + 60
    while admin.function_status(tenant, "events", "probe").get("numRunning") != 1:
        assert time.monotonic() < deadline, "the probe function never ran"
        time.sleep(0.5)


def _run_probe(admin: PulsarAdmin, tenant: str) -> None:
    _start_probe(admin, tenant)
    admin.delete_function(tenant, "events", "probe")


def test_deleting_a_tenant_or_namespace_deletes_its_functions(pulsar_admin: PulsarAdmin) -> None:
    """Left registered, a deleted tenant's Function is restarted by the worker for ever."""

    def delete_namespace(tenant: str) -> None:
        pulsar_admin.delete_namespace(f"{tenant}/events")

    deletions = {"tenant": pulsar_admin.delete_tenant, "namespace": delete_namespace}
    for what, delete in deletions.items():
        tenant = unique_name("delf")
        pulsar_admin.create_tenant(tenant)
        pulsar_admin.create_namespace(f"{tenant}/events")
        try:
            _start_probe(pulsar_admin, tenant)
            delete(tenant)
            assert pulsar_admin.functions(tenant, "events") == [], f"after deleting the {what}"
        finally:
            pulsar_admin.delete_function(tenant, "events", "probe")
            pulsar_admin.delete_tenant(tenant)


def test_a_used_tenant_is_gone_after_delete_every_time(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    client = make_client(settings.pulsar_service_url, settings.pulsar_admin_token)
    try:
        for round_ in range(ROUNDS):
            tenant = unique_name("del")
            pulsar_admin.create_tenant(tenant)
            for namespace in (f"{tenant}/events", f"{tenant}/state"):
                pulsar_admin.create_namespace(namespace)
            topic = f"persistent://{tenant}/events/raw"
            consumer = client.subscribe(topic, "reader")
            producer = client.create_producer(topic)
            for n in range(20):
                producer.send(f"m{n}".encode())
            for _ in range(20):
                consumer.acknowledge(consumer.receive(timeout_millis=10_000))
            producer.close()
            consumer.close()
            if round_ in WITH_FUNCTION:
                _run_probe(pulsar_admin, tenant)

            # Odd rounds delete the namespaces first, even rounds the tenant at once.
            if round_ % 2:
                for namespace in pulsar_admin.namespaces(tenant):
                    pulsar_admin.delete_namespace(namespace)
            pulsar_admin.delete_tenant(tenant)

            assert tenant not in pulsar_admin.tenants()
            assert pulsar_admin.namespaces(tenant) == []
    finally:
        client.close()
