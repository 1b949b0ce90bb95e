"""The private PostgreSQL cluster survives a fresh clone at the same path.

Under root the cluster lives below /var/tmp, keyed by the checkout's path, while its
passwords live in the checkout; a new clone at that path once found the old cluster and
failed every login (CI stop 11). Runs a real cluster on a port of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli.dev import postgres
from magnetar.problems import port_in_use
from magnetar.stack_layout import PostgresLayout

pytestmark = pytest.mark.integration

SPARE_PORT = 55499


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[PostgresLayout]:
    assert not port_in_use(SPARE_PORT), f"port {SPARE_PORT} is needed free for this test"
    made = PostgresLayout(tmp_path / "home", port=SPARE_PORT)
    yield made
    postgres.stop(made)
    shutil.rmtree(made.root, ignore_errors=True)


def _owner_can_log_in(layout: PostgresLayout) -> bool:
    with psycopg.connect(postgres.urls(layout)["database_owner_url"], connect_timeout=5) as conn:
        return conn.execute("SELECT current_user").fetchone() == (postgres.OWNER_ROLE,)


def test_a_cluster_without_its_passwords_is_made_again(layout: PostgresLayout) -> None:
    postgres.start(layout)
    assert _owner_can_log_in(layout)
    first_passwords = layout.secrets_file.read_text()

    layout.secrets_file.unlink()  # what a fresh clone at the same path looks like
    assert postgres.orphaned(layout)
    postgres.start(layout)  # while the old one still runs

    assert not postgres.orphaned(layout)
    assert layout.secrets_file.read_text() != first_passwords
    assert _owner_can_log_in(layout)


def test_a_cluster_with_its_passwords_is_kept(layout: PostgresLayout) -> None:
    postgres.start(layout)
    postgres.stop(layout)
    marker = layout.data / "kept-marker"
    marker.write_text("x")

    postgres.start(layout)

    assert marker.exists()
    assert _owner_can_log_in(layout)
