"""Against the real PostgreSQL: the owner role is refused wherever the app role connects,
and the app role is accepted."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from functions.batch_commit import BatchCommitter, MaterializeConfig, _Pending
from magnetar.db.app_role import require_app_role
from magnetar.db.serving_reader import ServingStateReader, open_serving_pool
from magnetar.errors import Unavailable
from magnetar.personalization import records
from magnetar.personalization.records import EnrichedEvent
from magnetar.problems import EnvironmentProblem
from magnetar.settings import Settings

pytestmark = pytest.mark.integration


def test_the_app_role_is_accepted(settings: Settings) -> None:
    assert require_app_role(settings.database_url) is True


def test_the_owner_role_is_refused_naming_the_fix(settings: Settings) -> None:
    with pytest.raises(EnvironmentProblem) as refused:
        require_app_role(settings.database_owner_url)
    assert "the owner of the database" in refused.value.problem
    assert "api_keys" in refused.value.problem
    assert "MAGNETAR_DATABASE_URL" in refused.value.fix


def test_a_serving_pool_never_reads_as_the_owner(settings: Settings) -> None:
    pool = open_serving_pool(settings.database_owner_url, timeout_s=1.0)
    try:
        reader = ServingStateReader(pool)
        with pytest.raises(Unavailable), reader.request("acme"):
            reader.user_activity("acme", "u1")
    finally:
        pool.close()
    app = open_serving_pool(settings.database_url, timeout_s=2.0)
    try:
        reader = ServingStateReader(app)
        with reader.request("acme"):
            reader.user_activity("acme", "no-such-user")
    finally:
        app.close()


def test_the_gateway_refuses_to_start_as_the_owner(settings: Settings) -> None:
    env = {
        **os.environ,
        "MAGNETAR_DATABASE_URL": settings.database_owner_url,
        "MAGNETAR_GRPC_PORT": "0",
        "MAGNETAR_METRICS_PORT": "0",
        "MAGNETAR_HTTP_PORT": "0",  # the HTTP door: any free port
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "gateway", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("magnetar: error: database role 'magnetar_owner' is ")
    assert "fix: set MAGNETAR_DATABASE_URL" in last


class _Context:
    def record_metric(self, name: str, value: float) -> None:
        pass


def test_materialize_never_writes_as_the_owner(settings: Settings) -> None:
    """The flusher's commit, run here in-process (inside Pulsar it runs the main checkout's
    code): with the owner's URL nothing is written and the batch stays for a retry."""
    tenant = f"role-{uuid.uuid4().hex[:8]}"
    event = EnrichedEvent(
        event_id="e1",
        tenant_id=tenant,
        user_id="u1",
        session_id="s1",
        type=records.VIEW,
        item_id="i1",
        occurred_at=1_780_000_000_000,
    )

    def commit(url: str) -> bool:
        committer = BatchCommitter(MaterializeConfig(tenant, url, "dlq"), _Context())
        try:
            committer._commit(_Pending(events=[event], accepted_at=[event.occurred_at]))
        except EnvironmentProblem:
            return False
        return True

    def rows() -> int:
        with psycopg.connect(settings.database_url) as conn:
            conn.execute("SELECT set_config('magnetar.tenant', %s, true)", (tenant,))
            found = conn.execute(
                "SELECT count(*) FROM processed_events WHERE tenant_id = %s", (tenant,)
            ).fetchone()
        return int(found[0]) if found else -1

    # (Results bound first: an assertion must not print a URL with its password.)
    as_owner = commit(settings.database_owner_url)
    assert as_owner is False
    assert rows() == 0
    as_app = commit(settings.database_url)
    assert as_app is True
    assert rows() == 1
