"""Which commit the contract check compares `proto/` with (scripts/check_contract.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


@pytest.fixture(scope="module")
def contract() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_contract", SCRIPTS / "check_contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_contract"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def history(contract: ModuleType, **changes: object) -> object:
    facts: dict[str, object] = {
        "head": "h",
        "main": "h",
        "head_in_main": True,
        "merge_base": None,
        "parent": "p",
        "shallow": False,
    }
    facts.update(changes)
    return contract.History(**facts)


def test_on_main_the_baseline_is_the_previous_commit(contract: ModuleType) -> None:
    assert contract.choose_baseline(history(contract)).commit == "p"
    # A clone without a `main` branch (a detached checkout) does the same.
    assert contract.choose_baseline(history(contract, main=None)).commit == "p"


def test_a_branch_is_compared_with_its_merge_base_not_its_own_parent(
    contract: ModuleType,
) -> None:
    branch = history(contract, main="m", head_in_main=False, merge_base="mb")
    assert contract.choose_baseline(branch).commit == "mb"


def test_an_override_wins(contract: ModuleType) -> None:
    assert contract.choose_baseline(history(contract), "v1.0.0").commit == "v1.0.0"


def test_a_root_commit_has_no_baseline_but_a_shallow_boundary_is_an_error(
    contract: ModuleType,
) -> None:
    assert contract.choose_baseline(history(contract, parent=None)).commit is None
    with pytest.raises(contract.ContractError, match="shallow"):
        contract.choose_baseline(history(contract, parent=None, shallow=True))
    with pytest.raises(contract.ContractError, match="merge base"):
        contract.choose_baseline(
            history(contract, main="m", head_in_main=False, merge_base=None, shallow=True)
        )
