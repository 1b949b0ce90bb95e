"""The layer contracts ([tool.importlinter] in pyproject.toml) hold for the tree, and break,
naming the contract, when a module imports across them; `make check` and `make test` run them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tests", "cli", "bench", "gateway", "tenants", "functions", "magnetar")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root`, with the repository's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        # The packages under `root`, not the installed ones.
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_tree(destination: Path) -> None:
    """The Python sources of every layer and the configuration, nothing else."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            destination / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "results", "*.json", "*.yaml"),
        )
    shutil.copy(REPO / "pyproject.toml", destination / "pyproject.toml")


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: 2 kept, 0 broken", result.stdout), result.stdout


def test_an_import_across_the_layers_breaks_the_contract_it_crosses(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    # The kernel reaching up into the gateway; the pure core reaching for PostgreSQL.
    (tmp_path / "magnetar" / "upward.py").write_text("import gateway.server\n")
    (tmp_path / "functions" / "logic" / "with_io.py").write_text("import psycopg\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"layers: tests > cli > .* BROKEN", out), out
    assert re.search(r"pure core: .* BROKEN", out), out
    assert "magnetar.upward -> gateway.server" in out, out
    assert "functions.logic.with_io -> psycopg" in out, out
    assert re.search(r"Contracts: 0 kept, 2 broken", out), out


def test_make_check_and_make_test_run_the_contracts() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("check", "test"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe is not None, f"no `{target}` target"
        lines = recipe.group(1)
        assert "$(BIN)/lint-imports" in lines, f"`make {target}` does not run lint-imports"
        assert lines.index("lint-imports") < lines.index("pytest"), target
