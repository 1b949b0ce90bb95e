"""Deploy a tenant's pipeline Functions through the admin REST API (create or update)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from functions.deployment import PipelineOptions, package_file, pipeline
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.topics import TenantTopics


def deploy_pipeline(
    admin: PulsarAdmin, tenant: str, options: PipelineOptions
) -> Mapping[str, dict[str, Any]]:
    configs = pipeline(TenantTopics(tenant), options)
    for stage, config in configs.items():
        exists = admin.function_config(tenant, "events", stage) is not None
        admin.create_function(config, package_file(stage), update=exists)
    return configs


def wait_running(
    admin: PulsarAdmin, tenant: str, stages: Mapping[str, Any], *, timeout_s: float = 90
) -> dict[str, int]:
    """Wait until every stage has all its instances running; returns running counts."""
    deadline = time.monotonic() + timeout_s
    running: dict[str, int] = {}
    while time.monotonic() < deadline:
        running = {
            stage: int(admin.function_status(tenant, "events", stage).get("numRunning", 0))
            for stage in stages
        }
        if all(running[s] >= int(stages[s]["parallelism"]) for s in stages):
            return running
        time.sleep(0.5)
    raise TimeoutError(f"functions of {tenant} not running: {running}")


def undeploy_pipeline(admin: PulsarAdmin, tenant: str) -> None:
    for stage in ("dedupe", "enrich", "materialize"):
        admin.delete_function(tenant, "events", stage)
