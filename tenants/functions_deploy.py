"""Deploy a tenant's pipeline Functions through the admin REST API (create or update).

`PipelineDeployer`, the reconciler's `FunctionDeployer`, leaves a Function deployed as asked
alone, updates one that differs and creates a missing one; one whose input topics differ is
deleted and created again under the same subscription, which keeps its position. The module
functions serve tests, benchmarks and the demo that deploy a pipeline directly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from functions.deployment import STAGES, PipelineOptions, package_file, pipeline
from magnetar.errors import Unavailable
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.topics import LEGACY_FUNCTIONS, TenantTopics, subscription_of
from tenants.function_state import FunctionStateStorage, state_namespace
from tenants.model import FunctionHealth
from tenants.pulsar_port import pulsar_errors
from tenants.pulsar_setup import ensure_import_topic

# The fields of a FunctionConfig that decide what runs; the worker fills in the rest.
_COMPARED = (
    "className",
    "runtime",
    "parallelism",
    "processingGuarantees",
    "retainKeyOrdering",
    "autoAck",
    "subName",
    "subscriptionPosition",
    "cleanupSubscription",
    "timeoutMs",
)


def deploy_pipeline(
    admin: PulsarAdmin, tenant: str, options: PipelineOptions
) -> Mapping[str, dict[str, Any]]:
    """Create or update the tenant's pipeline (one deployed as asked is left running), then
    remove an earlier release's three-stage pipeline."""
    configs = pipeline(TenantTopics(tenant), options)
    ensure_import_topic(admin, TenantTopics(tenant))
    for config in configs.values():
        apply_function(admin, tenant, config)
    remove_legacy_pipeline(admin, tenant)
    return configs


def _inputs(config: Mapping[str, Any]) -> set[str]:
    return set(config.get("inputSpecs") or {})


def apply_function(admin: PulsarAdmin, tenant: str, config: dict[str, Any]) -> None:
    """Create the Function, update it, or (when its input topics change, which the worker
    refuses to update) delete and create it; leave it alone when it runs as asked."""
    stage = str(config["name"])
    existing = admin.function_config(tenant, "events", stage)
    if existing is not None and config_matches(existing, config):
        return
    if existing is not None and _inputs(existing) != _inputs(config):
        admin.delete_function(tenant, "events", stage)
        existing = None
    admin.create_function(config, package_file(stage), update=existing is not None)


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
    for stage in STAGES + LEGACY_FUNCTIONS:
        admin.delete_function(tenant, "events", stage)


def remove_legacy_pipeline(admin: PulsarAdmin, tenant: str) -> list[str]:
    """Remove the three-stage pipeline an earlier release deployed, once the one-Function
    pipeline runs: its Functions, and its subscription on the raw topic (which would hold
    the raw backlog for ever). Events it had not counted yet are counted by the new
    pipeline, which reads the raw topic from its earliest retained message."""
    removed = []
    topics = TenantTopics(tenant)
    for stage in LEGACY_FUNCTIONS:
        if admin.function_config(tenant, "events", stage) is not None:
            admin.delete_function(tenant, "events", stage)
            removed.append(f"function {tenant}/events/{stage}")
    if admin.partitions(topics.raw) is not None:
        admin.delete_subscription(topics.raw, subscription_of(LEGACY_FUNCTIONS[0]))
    return removed


def _plain(value: Any) -> Any:
    """The worker hands numbers back as floats and user config values as it parsed them."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def config_matches(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the deployed function runs what `desired` describes."""
    for key in _COMPARED:
        if _plain(existing.get(key)) != _plain(desired.get(key)):
            return False
    inputs = {t: s.get("serdeClassName") for t, s in (existing.get("inputSpecs") or {}).items()}
    wanted = {t: s.get("serdeClassName") for t, s in desired["inputSpecs"].items()}
    if inputs != wanted:
        return False
    return bool(_plain(existing.get("userConfig") or {}) == _plain(desired["userConfig"]))


def _last_error(status: Mapping[str, Any]) -> str:
    for instance in status.get("instances") or []:
        detail = instance.get("status") or {}
        if detail.get("error"):
            return str(detail["error"])
        for key in ("latestSystemExceptions", "latestUserExceptions"):
            if exceptions := detail.get(key):
                return str(exceptions[-1].get("exceptionString", ""))
    return ""


class PipelineDeployer:
    """The reconciler's FunctionDeployer over the functions worker's REST API."""

    def __init__(
        self,
        admin: PulsarAdmin,
        options: PipelineOptions,
        state: FunctionStateStorage | None = None,
    ) -> None:
        self._admin = admin
        self._options = options
        self._state = state

    def deploy(self, tenant_id: str) -> None:
        if self._state is not None:
            # Before any instance starts: they would race to create it (see function_state).
            self._state.ensure_namespace(tenant_id)
        with pulsar_errors("creating the import topic"):
            ensure_import_topic(self._admin, TenantTopics(tenant_id))
        # One at a time: concurrent registrations in one namespace race in the worker's
        # package storage ("Someone just created log /pulsar/functions/...").
        for config in pipeline(TenantTopics(tenant_id), self._options).values():
            self._deploy_one(tenant_id, config)
        with pulsar_errors("removing the three-stage pipeline"):
            remove_legacy_pipeline(self._admin, tenant_id)

    def _deploy_one(self, tenant_id: str, config: dict[str, Any]) -> None:
        stage = str(config["name"])
        with pulsar_errors(f"deploying function {stage}"):
            apply_function(self._admin, tenant_id, config)

    def warm_up(self) -> None:
        """Load the state storage client now rather than in the first onboarding."""
        if self._state is not None:
            self._state.connect()

    def status(self, tenant_id: str) -> list[FunctionHealth]:
        found = []
        for stage in STAGES:
            try:
                with pulsar_errors(f"status of function {stage}"):
                    status = self._admin.function_status(tenant_id, "events", stage)
            except Unavailable as error:
                if error.metadata.get("http_status") == "404":
                    continue
                raise
            found.append(
                FunctionHealth(
                    name=stage,
                    running_instances=int(status.get("numRunning", 0)),
                    instances=int(status.get("numInstances", 0)),
                    last_error=_last_error(status),
                )
            )
        return found

    def undeploy(self, tenant_id: str) -> list[str]:
        removed = []
        for stage in STAGES + LEGACY_FUNCTIONS:
            with pulsar_errors(f"deleting function {stage}"):
                if self._admin.function_config(tenant_id, "events", stage) is not None:
                    self._admin.delete_function(tenant_id, "events", stage)
                    removed.append(f"function {tenant_id}/events/{stage}")
        if self._state is not None and self._state.remove(tenant_id, STAGES + LEGACY_FUNCTIONS):
            removed.append(f"function state {state_namespace(tenant_id)}")
        return removed
