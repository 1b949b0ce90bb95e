"""The per-tenant pipeline as Pulsar Function configurations (pure data, no I/O).

The same dictionaries go to the admin REST API (`magnetar functions deploy`) and, rendered
as YAML, to ``bin/pulsar-admin functions create --function-config-file``.

How the code ships: the functions worker's ``python3`` has the ``magnetar`` distribution
installed (the dev stack starts the broker with the project's virtualenv first on PATH; on
Kubernetes the worker image installs the same wheel). The uploaded file is the stage's own
module, but ``className`` names the installed module (``functions.dedupe.Dedupe``), so the
code that runs is always the installed, tested version and its dependencies come with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions.dedupe
import functions.enrich
import functions.materialize
from functions.serde import SERDE_CLASS
from magnetar.topics import TenantTopics as TenantTopics  # re-exported: part of the pipeline API


@dataclass(frozen=True)
class PipelineOptions:
    parallelism: int = 1
    dedupe_window_ms: int = 24 * 60 * 60 * 1000
    # A file on the worker host holding the application role's database URL.
    database_url_file: str = ""
    # Redelivery of inputs a stage took but never acknowledged (a crash, a failed publish).
    ack_timeout_ms: int = 60_000
    # Keep dedupe's window and enrich's sessions in Pulsar's function state (survives
    # restarts); off, both live in memory only and a restart forgets them — the ledger still
    # counts every event once.
    durable_state: bool = True


STAGES = ("dedupe", "enrich", "materialize")
MODULES = {
    "dedupe": functions.dedupe,
    "enrich": functions.enrich,
    "materialize": functions.materialize,
}
CLASSES = {
    "dedupe": "functions.dedupe.Dedupe",
    "enrich": "functions.enrich.Enrich",
    "materialize": "functions.materialize.Materialize",
}


def package_file(stage: str) -> Path:
    """The file uploaded with a stage (its own module)."""
    module_file = MODULES[stage].__file__
    assert module_file is not None
    return Path(module_file)


def function_config(stage: str, topics: TenantTopics, options: PipelineOptions) -> dict[str, Any]:
    inputs = {"dedupe": topics.raw, "enrich": topics.deduped, "materialize": topics.enriched}
    user_config: dict[str, Any] = {
        "tenant_id": topics.tenant,
        "dlq_topic": topics.dlq,
        "durable_state": str(options.durable_state).lower(),
        "parallelism": options.parallelism,
    }
    if stage == "dedupe":
        user_config |= {"output_topic": topics.deduped, "window_ms": options.dedupe_window_ms}
    elif stage == "enrich":
        user_config |= {"output_topic": topics.enriched, "catalog_topic": topics.catalog}
    else:
        user_config |= {"database_url_file": options.database_url_file}
    return {
        "tenant": topics.tenant,
        "namespace": "events",
        "name": stage,
        "className": CLASSES[stage],
        "runtime": "PYTHON",
        "py": package_file(stage).name,
        "inputSpecs": {inputs[stage]: {"serdeClassName": SERDE_CLASS}},
        # Key_Shared: one user's events go to one instance (repeats meet, sessions hold).
        "retainKeyOrdering": True,
        "processingGuarantees": "ATLEAST_ONCE",
        # We acknowledge ourselves, after the output is stored (see functions.runtime).
        "autoAck": False,
        "subName": f"magnetar-{stage}",
        "subscriptionPosition": "Earliest",
        "cleanupSubscription": False,
        "timeoutMs": options.ack_timeout_ms,
        "parallelism": options.parallelism,
        "userConfig": user_config,
    }


def pipeline(topics: TenantTopics, options: PipelineOptions) -> Mapping[str, dict[str, Any]]:
    return {stage: function_config(stage, topics, options) for stage in STAGES}
