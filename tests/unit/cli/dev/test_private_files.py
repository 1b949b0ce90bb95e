"""Credentials are written to files that are private from the instant they exist."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.dev import postgres, pulsar, stack
from magnetar.private_files import private_folder, write_private
from magnetar.stack_layout import PostgresLayout, PulsarLayout


class Creations:
    """The mode of every file opened for writing, taken right after the open that made it,
    before anything is written into it."""

    def __init__(self) -> None:
        self.modes: dict[Path, int] = {}

    def saw(self, path: Any, fd: int) -> None:
        self.modes.setdefault(Path(path).resolve(), stat.S_IMODE(os.fstat(fd).st_mode))

    def under(self, folder: Path) -> dict[str, int]:
        return {
            str(p.relative_to(folder.resolve())): m
            for p, m in self.modes.items()
            if p.is_relative_to(folder.resolve())
        }


@pytest.fixture
def creations(monkeypatch: pytest.MonkeyPatch) -> Iterator[Creations]:
    """Watches `os.open` and `io.open` (what `Path.write_text` uses) with umask 0, so a file
    not created private shows as 0666."""
    seen = Creations()
    real_os_open, real_io_open = os.open, io.open

    def os_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        fd = real_os_open(path, flags, mode, **kw)
        if flags & os.O_CREAT:
            seen.saw(path, fd)
        return fd

    def io_open(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        handle = real_io_open(file, mode, *args, **kw)
        if any(c in mode for c in "wax") and not isinstance(file, int):
            seen.saw(file, handle.fileno())
        return handle

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(io, "open", io_open)
    previous = os.umask(0)
    try:
        yield seen
    finally:
        os.umask(previous)


def test_a_private_file_is_0600_when_created_and_after(
    tmp_path: Path, creations: Creations
) -> None:
    target = tmp_path / "token"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "secret")
    assert target.read_text() == "secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    created = {name: mode for name, mode in creations.under(tmp_path).items() if name != "token"}
    assert list(created.values()) == [0o600]  # the new file, before its first byte
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary left


def test_a_private_file_is_created_exclusively_and_not_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags: list[int] = []
    real_open = os.open

    def recording_open(path: Any, flag: int, mode: int = 0o777, **kw: Any) -> int:
        flags.append(flag)
        assert mode == 0o600
        return real_open(path, flag, mode, **kw)

    monkeypatch.setattr(os, "open", recording_open)
    write_private(tmp_path / "key", b"\x00\x01")
    assert len(flags) == 1
    assert flags[0] & os.O_CREAT and flags[0] & os.O_EXCL and flags[0] & os.O_NOFOLLOW


def test_a_private_folder_is_0700_new_or_existing(tmp_path: Path, creations: Creations) -> None:
    (tmp_path / "old").mkdir(mode=0o755)
    for name in ("old", "new/deeper"):
        assert stat.S_IMODE(private_folder(tmp_path / name).stat().st_mode) == 0o700


def test_the_stacks_state_and_database_url_files_are_created_private(
    tmp_path: Path, creations: Creations
) -> None:
    stack._write_state(tmp_path, {"admin_api_key": "k", "database_url": "postgresql://a:pw@h/d"})
    stack._write_state(tmp_path, {"grpc_port": "1"})
    path = stack._database_url_file(tmp_path)
    assert path.read_text() == "postgresql://a:pw@h/d\n"
    assert json.loads((tmp_path / "dev.json").read_text())["admin_api_key"] == "k"
    assert set(creations.under(tmp_path).values()) == {0o600}
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_the_postgres_passwords_are_created_private(tmp_path: Path, creations: Creations) -> None:
    passwords = postgres._passwords(PostgresLayout(tmp_path))
    assert set(passwords) == {"postgres", postgres.OWNER_ROLE, postgres.APP_ROLE}
    assert set(creations.under(tmp_path).values()) == {0o600}


def test_the_pulsar_token_key_and_superuser_token_are_created_private(
    tmp_path: Path, creations: Creations
) -> None:
    layout = PulsarLayout(tmp_path, "0.0.0")
    (layout.dist / "conf").mkdir(parents=True)
    for name in ("standalone.conf", "functions_worker.yml"):
        (layout.dist / "conf" / name).write_text("")
    pulsar.configure(layout)
    secret_files = creations.under(layout.secret_key.parent)
    assert set(secret_files.values()) == {0o600}
    assert len(secret_files) == 2
    assert stat.S_IMODE(layout.secret_key.parent.stat().st_mode) == 0o700
