"""`scripts/check_contract.py` (run by `make test`) fails on a breaking change to proto/.

Each test builds a small git repository holding a copy of this checkout's proto/ (with its
buf.yaml), makes a change in a later commit or the working tree, and runs the script on it
as `make test` does. buf is built by scripts/install_tools.sh (pinned, idempotent).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_contract.py"
EVENTS = Path("proto") / "magnetar" / "v1" / "events.proto"


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "install_tools.sh")], check=True, timeout=1800)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def renumber_user_id(repo: Path) -> None:
    path = repo / EVENTS
    text = path.read_text()
    assert "string user_id = 2;" in text
    path.write_text(text.replace("string user_id = 2;", "string user_id = 99;"))


def add_a_field(repo: Path) -> None:
    path = repo / EVENTS
    text = path.read_text()
    closing = text.index("  string search_query = 12;\n") + len("  string search_query = 12;\n")
    path.write_text(
        text[:closing]
        + "  // A new, optional field: compatible.\n  string referrer = 13;\n"
        + text[closing:]
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A `main` branch of two commits, the second one the current proto/."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README").write_text("before the contract\n")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "root")
    shutil.copytree(ROOT / "proto", origin / "proto")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "the contract")
    return origin


def check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def commit(repo: Path, change: Callable[[Path], None], message: str) -> None:
    change(repo)
    git(repo, "commit", "-q", "-am", message)


def test_the_current_protos_pass_lint_and_an_added_field_is_compatible(repo: Path) -> None:
    commit(repo, add_a_field, "a new field")
    passed = check(repo)
    assert passed.returncode == 0, passed.stderr
    assert "compatible with" in passed.stdout


def test_a_renumbered_field_on_main_fails_against_the_previous_commit(repo: Path) -> None:
    commit(repo, renumber_user_id, "renumber")
    failed = check(repo)
    assert failed.returncode == 1
    assert 'field "2" with name "user_id"' in failed.stdout + failed.stderr
    assert "on main, its previous commit" in failed.stderr


def test_an_uncommitted_break_on_a_branch_fails_against_the_merge_base(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, add_a_field, "compatible first")
    renumber_user_id(repo)  # in the working tree only
    failed = check(repo)
    assert failed.returncode == 1
    assert "merge base with main" in failed.stderr


def test_a_shallow_clone_is_deepened_to_find_the_previous_commit(
    repo: Path, tmp_path: Path
) -> None:
    commit(repo, renumber_user_id, "renumber")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository").strip() == "true"
    failed = check(clone)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert 'field "2" with name "user_id"' in failed.stdout + failed.stderr


def test_a_shallow_clone_that_cannot_be_deepened_fails_rather_than_passes(
    repo: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    git(clone, "remote", "remove", "origin")
    refused = check(clone)
    assert refused.returncode == 2
    assert "shallow clone" in refused.stderr
