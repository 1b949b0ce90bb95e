"""`magnetar functions package` writes the uploaded files reproducibly, with their hashes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from functions.deployment import STAGES

pytestmark = pytest.mark.integration


def _package(out: Path) -> dict[str, dict[str, str]]:
    subprocess.run(
        [sys.executable, "-m", "cli.main", "functions", "package", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    manifest: dict[str, dict[str, str]] = json.loads((out / "MANIFEST.json").read_text())
    return manifest


def test_package_is_reproducible_and_its_manifest_matches_the_files(tmp_path: Path) -> None:
    first, second = _package(tmp_path / "a"), _package(tmp_path / "b")
    assert first == second
    assert set(first) == set(STAGES) == {"pipeline"}
    for entry in first.values():
        content = (tmp_path / "a" / entry["file"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert content == (tmp_path / "b" / entry["file"]).read_bytes()
