"""A deployed function that runs what was asked is left alone; one that differs is updated."""

from __future__ import annotations

import copy
from typing import Any

from functions.deployment import STAGES, PipelineOptions, function_config
from magnetar.topics import TenantTopics
from tenants.functions_deploy import config_matches


def as_the_worker_returns_it(config: dict[str, Any]) -> dict[str, Any]:
    """What GET /admin/v3/functions/... answers: numbers as floats, defaults filled in."""
    returned = copy.deepcopy(config)
    returned.pop("py")
    returned["userConfig"] = {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in returned["userConfig"].items()
    }
    for spec in returned["inputSpecs"].values():
        spec |= {"schemaProperties": {}, "consumerProperties": {}, "regexPattern": False}
    returned |= {
        "resources": {"cpu": 1.0},
        "retainOrdering": False,
        "forwardSourceMessageProperty": True,
    }
    return returned


def test_a_function_as_the_worker_returns_it_matches_its_config() -> None:
    for stage in STAGES:
        config = function_config(stage, TenantTopics("acme"), PipelineOptions())
        assert config_matches(as_the_worker_returns_it(config), config)


def test_a_different_parallelism_input_or_user_config_does_not_match() -> None:
    config = function_config("pipeline", TenantTopics("acme"), PipelineOptions())
    deployed = as_the_worker_returns_it(config)
    assert not config_matches(deployed | {"parallelism": 2}, config)
    assert not config_matches(deployed | {"inputSpecs": {"persistent://x/y/z": {}}}, config)
    changed = copy.deepcopy(deployed)
    changed["userConfig"]["window_ms"] = 1.0
    assert not config_matches(changed, config)
