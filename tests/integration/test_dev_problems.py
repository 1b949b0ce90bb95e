"""A bad environment gets one line that names the fix, and exit code 2, before anything starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from magnetar import stack_layout
from magnetar.settings import Settings

pytestmark = pytest.mark.integration

MAIN_DIST = stack_layout.layouts()[0].dist


def _home_with_distribution(tmp_path: Path) -> Path:
    """A fresh Magnetar home that shares the already unpacked Pulsar distribution."""
    home = tmp_path / "home"
    (home / "dist").mkdir(parents=True)
    (home / "dist" / MAIN_DIST.name).symlink_to(MAIN_DIST)
    return home


def _bin_dir(tmp_path: Path, *programs: str) -> Path:
    """A PATH folder holding only the named programs (and this Python)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    for program in programs:
        found = shutil.which(program)
        assert found, f"{program} is needed to set up this test"
        (folder / program).symlink_to(found)
    return folder


def _dev_up(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    environment.update({"MAGNETAR_HOME": str(home), **env})
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "dev", "up"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _assert_one_line_fix(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "fix:" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_port_in_use_is_named_with_its_role(settings: Settings, tmp_path: Path) -> None:
    # The session's stack holds the broker port; a second stack must refuse, not collide.
    result = _dev_up(_home_with_distribution(tmp_path))
    _assert_one_line_fix(result, "port 6650", "already in use")
    assert not (tmp_path / "home" / "pulsar" / "standalone.pid").exists()


def test_missing_java_is_reported_before_anything_starts(tmp_path: Path) -> None:
    home = _home_with_distribution(tmp_path)
    result = _dev_up(home, PATH=str(_bin_dir(tmp_path)))
    _assert_one_line_fix(result, "`java` was not found", "openjdk")
    assert not (home / "dev.json").exists()


def test_unreachable_maven_central_is_reported(tmp_path: Path) -> None:
    # A settings.xml whose only mirror is a closed loopback port and whose local repository
    # is empty: Maven must go to the network and cannot.
    settings_xml = tmp_path / "settings.xml"
    settings_xml.write_text(
        "<settings><localRepository>"
        f"{tmp_path / 'm2'}"
        "</localRepository><mirrors><mirror><id>closed</id><mirrorOf>*</mirrorOf>"
        "<url>http://127.0.0.1:9/</url></mirror></mirrors></settings>"
    )
    home = tmp_path / "home"
    result = _dev_up(home, MAGNETAR_MAVEN_SETTINGS=str(settings_xml))
    _assert_one_line_fix(result, "Maven Central is unreachable", "network")
    assert not (home / "dist").exists()


def test_missing_postgres_binaries_without_apt_are_reported(tmp_path: Path) -> None:
    home = _home_with_distribution(tmp_path)
    empty_root = tmp_path / "no-postgres"
    empty_root.mkdir()
    result = _dev_up(
        home, PATH=str(_bin_dir(tmp_path, "java")), MAGNETAR_POSTGRES_ROOT=str(empty_root)
    )
    _assert_one_line_fix(result, "PostgreSQL server binaries", "MAGNETAR_DATABASE_URL")
