"""The per-tenant pipeline as a Pulsar Function configuration (pure data, no I/O).

The same dictionary goes to the admin REST API (`magnetar functions deploy`) and, rendered
as YAML, to ``bin/pulsar-admin functions create --function-config-file``.

How the code ships: the functions worker's ``python3`` has the ``magnetar`` distribution
installed (the dev stack starts the broker with the project's virtualenv first on PATH; on
Kubernetes the worker image installs the same wheel). The uploaded file is the Function's
own module, but ``className`` names the installed module (``functions.pipeline.Pipeline``),
so the code that runs is always the installed, tested version with its dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions.pipeline
from functions.serde import SERDE_CLASS
from magnetar.dedupe import DEFAULT_WINDOW_MS
from magnetar.topics import PIPELINE_FUNCTIONS, subscription_of
from magnetar.topics import TenantTopics as TenantTopics  # re-exported: part of the pipeline API


@dataclass(frozen=True)
class PipelineOptions:
    parallelism: int = 1
    dedupe_window_ms: int = DEFAULT_WINDOW_MS
    # A file on the worker host holding the application role's database URL.
    database_url_file: str = ""
    # Redelivery of inputs the pipeline took but never acknowledged (a crash, a failed commit
    # or dead-letter publish).
    ack_timeout_ms: int = 60_000
    # Keep the dedupe window and the sessions in Pulsar's function state (survives restarts);
    # off, both live in memory only and a restart forgets them — the ledger still counts every
    # event once.
    durable_state: bool = True


# One Function per tenant (see functions.pipeline); the names live in magnetar.topics.
STAGES = PIPELINE_FUNCTIONS
MODULES = {"pipeline": functions.pipeline}
CLASSES = {"pipeline": "functions.pipeline.Pipeline"}


def package_file(stage: str) -> Path:
    """The file uploaded with a Function (its own module)."""
    module_file = MODULES[stage].__file__
    assert module_file is not None
    return Path(module_file)


def function_config(stage: str, topics: TenantTopics, options: PipelineOptions) -> dict[str, Any]:
    user_config: dict[str, Any] = {
        "tenant_id": topics.tenant,
        "dlq_topic": topics.dlq,
        "durable_state": str(options.durable_state).lower(),
        "parallelism": options.parallelism,
        "window_ms": options.dedupe_window_ms,
        "catalog_topic": topics.catalog,
        "database_url_file": options.database_url_file,
    }
    return {
        "tenant": topics.tenant,
        "namespace": "events",
        "name": stage,
        "className": CLASSES[stage],
        "runtime": "PYTHON",
        "py": package_file(stage).name,
        # Live events and imported history, through the same steps (docs/pipeline.md).
        "inputSpecs": {
            topic: {"serdeClassName": SERDE_CLASS} for topic in (topics.raw, topics.imports)
        },
        # Key_Shared: one user's events go to one instance (repeats meet, sessions hold).
        "retainKeyOrdering": True,
        "processingGuarantees": "ATLEAST_ONCE",
        # We acknowledge ourselves, after the commit or the dead letter is stored.
        "autoAck": False,
        "subName": subscription_of(stage),
        "subscriptionPosition": "Earliest",
        "cleanupSubscription": False,
        "timeoutMs": options.ack_timeout_ms,
        "parallelism": options.parallelism,
        "userConfig": user_config,
    }


def pipeline(topics: TenantTopics, options: PipelineOptions) -> Mapping[str, dict[str, Any]]:
    return {stage: function_config(stage, topics, options) for stage in STAGES}
