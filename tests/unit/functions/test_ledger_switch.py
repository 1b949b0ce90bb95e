"""The test-only switch that turns the pipeline's ledger off cannot come from a production
deployment: `"ledger": "off"` alone is refused, and no production path writes it or its guard."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import pytest

from cli.commands import functions as functions_command
from functions.batch_commit import LEDGER_OFF_GUARD, MaterializeConfig, ledger_enabled
from functions.deployment import PipelineOptions, TenantTopics, pipeline
from magnetar.topics import PIPELINE_FUNCTION, PIPELINE_FUNCTIONS

GUARD_KEY, GUARD_VALUE = LEDGER_OFF_GUARD
REPO = Path(__file__).resolve().parents[3]


def _materialize(user_config: dict[str, Any], tmp_path: Path) -> MaterializeConfig:
    url_file = tmp_path / "database_url"
    url_file.write_text("postgresql://app@127.0.0.1/magnetar\n")
    return MaterializeConfig.from_user_config(
        {"tenant_id": "acme", "dlq_topic": "dlq", "database_url_file": str(url_file)} | user_config
    )


def test_the_ledger_is_on_unless_switched_off_with_the_guard(tmp_path: Path) -> None:
    assert _materialize({}, tmp_path).ledger
    assert _materialize({"ledger": "on"}, tmp_path).ledger
    assert not _materialize({"ledger": "OFF", GUARD_KEY: GUARD_VALUE}, tmp_path).ledger


@pytest.mark.parametrize("guard", [{}, {GUARD_KEY: "yes"}, {GUARD_KEY: ""}])
def test_ledger_off_without_its_guard_is_refused(guard: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="test-only switch"):
        ledger_enabled({"ledger": "off"} | guard)


def _written_by_production(config: dict[str, Any]) -> set[str]:
    keys = set(config["userConfig"]) & {"ledger", GUARD_KEY}
    return keys | ({"guard value"} if GUARD_VALUE in repr(config) else set())


def test_no_production_pipeline_config_carries_the_switch_or_its_guard(tmp_path: Path) -> None:
    """`pipeline` is what `magnetar functions deploy`, onboarding (tenants.functions_deploy)
    and the chart's deploy job (which runs `magnetar functions deploy`) send to Pulsar."""
    for parallelism, durable, url_file in itertools.product((1, 4), (True, False), ("", "/f")):
        options = PipelineOptions(
            parallelism=parallelism, durable_state=durable, database_url_file=url_file
        )
        for config in pipeline(TenantTopics("acme"), options).values():
            assert _written_by_production(config) == set()
    deployed = pipeline(TenantTopics("acme"), PipelineOptions())[PIPELINE_FUNCTION]
    produced = {k: v for k, v in deployed["userConfig"].items() if k != "database_url_file"}
    assert _materialize(produced, tmp_path).ledger


def test_functions_render_writes_neither_the_switch_nor_its_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAGNETAR_HOME", str(tmp_path / "home"))
    out = tmp_path / "rendered"
    args = argparse.Namespace(tenant="acme", out=out, database_url_file="/f")
    assert functions_command._render(args) == 0
    rendered = [p.read_text() for p in sorted(out.glob("*.yaml"))]
    assert len(rendered) == len(PIPELINE_FUNCTIONS)
    assert not any(GUARD_KEY in text or '"ledger"' in text for text in rendered)


def test_only_the_fault_suite_names_the_guard() -> None:
    """The chart, the CLI and the product code cannot set the guard: none of them has it."""
    naming = {
        str(path.relative_to(REPO))
        for path in REPO.rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".yaml", ".yml", ".tpl", ".txt", ".json", ".md"}
        and not {".venv", ".git", ".magnetar"} & set(path.parts)
        and GUARD_KEY in path.read_text(errors="replace")
    }
    assert naming <= {
        "functions/batch_commit.py",  # defines it, as a constant
        "tests/faults/harness.py",  # uses it via the constant (no literal)
        "tests/unit/functions/test_ledger_switch.py",
    }
