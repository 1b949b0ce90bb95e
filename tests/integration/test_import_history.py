"""`magnetar import` through the real gateway, broker and (for the second test) pipeline.

The first test runs with any build: the CLI reads a file with a bad row, publishes every
good row to the tenant's import topic and reports the bad one by line. The second needs the
pipeline Function that reads the import topic (this branch's `functions/pipeline.py`
installed where the functions worker runs): an import interrupted and resumed twice counts
every event once, and the imported history shows in GetUserProfile and Recommend.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from cli.main import main
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope
from magnetar.history import progress as progress_file
from magnetar.history.importer import resume_point, run_import
from magnetar.history.mapping import ONLINE_RETAIL_COLUMNS, ColumnMapping
from magnetar.history.progress import ImportProgress
from magnetar.history.sender import ImportSender
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.raw_events import import_events_topic, provision_import_topic
from magnetar.settings import Settings
from magnetar.v1 import event_service_pb2_grpc, events_pb2, personalization_service_pb2_grpc
from magnetar.v1 import personalization_service_pb2 as ps
from tests.integration.gateway_harness import (
    IngestTenant,
    RunningGateway,
    add_tenant_row,
    read_all,
    remove_tenant_row,
)
from tests.integration.pipeline_support import Pipeline, running_pipeline

pytestmark = pytest.mark.integration

DAY_S = 24 * 3600
START_S = int(time.time()) - 200 * DAY_S  # history from long before the 7-day horizon


def history_csv(path: Path, rows: int, *, bad_line_every: int = 0) -> set[str]:
    """A purchase history file; returns the ids of its good rows."""
    lines = ["event_id,user_id,type,item_id,occurred_at,session_id"]
    good = set()
    for n in range(rows):
        at = START_S + n * 600
        if bad_line_every and n % bad_line_every == bad_line_every - 1:
            lines.append(f"h{n},u{n % 7},purchase,i{n % 11},not-a-time,s{n // 5}")
            continue
        lines.append(f"h{n},u{n % 7},purchase,i{n % 11},{at},s{n // 5}")
        good.add(f"h{n}")
    path.write_text("\n".join(lines) + "\n")
    return good


def test_the_cli_imports_a_file_to_the_import_topic_and_reports_bad_rows(
    tmp_path: Path,
    ingest_tenant: IngestTenant,
    gateway: RunningGateway,
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provision_import_topic(pulsar_admin, ingest_tenant.tenant_id)
    path = tmp_path / "history.csv"
    good = history_csv(path, 250, bad_line_every=100)
    argv = ["import", str(path), "--tenant", ingest_tenant.tenant_id, "--batch-size", "40"]
    argv += ["--gateway", gateway.address, "--api-key", ingest_tenant.ingest_key]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "imported 248 events; 2 rows rejected" in err
    assert "line 101: unparsable time 'not-a-time'" in err
    messages = read_all(settings, import_events_topic(ingest_tenant.tenant_id), expect=248)
    assert {m.partition_key() for m in messages} == {f"u{n}" for n in range(7)}
    assert sorted(events_pb2.Event.FromString(m.data()).event_id for m in messages) == sorted(good)
    rejects = progress_file.rejects_path(progress_file.progress_path(path, ingest_tenant.tenant_id))
    assert [r.split(",")[0] for r in rejects.read_text().splitlines()[1:]] == ["101", "201"]
    # Run again: the file is finished, nothing is sent twice without --again.
    assert main(argv) == 1
    assert "--again" in capsys.readouterr().err


@contextmanager
def importing_tenant(
    settings: Settings, pulsar_admin: PulsarAdmin, key_store: ApiKeyStore
) -> Iterator[tuple[Pipeline, str]]:
    """A tenant with its pipeline running, its tenants row and an ingest key (the secret)."""
    with running_pipeline(settings, pulsar_admin, prefix="import") as pipe:
        add_tenant_row(settings, pipe.tenant)
        try:
            ingest, _ = key_store.create(pipe.tenant, [Scope.INGEST], "import test")
            yield pipe, ingest.secret
        finally:
            remove_tenant_row(settings, pipe.tenant)


class Interrupt(Exception):
    pass


@pytest.mark.timeout(600)
def test_an_import_interrupted_and_resumed_twice_is_counted_once_and_served(
    tmp_path: Path,
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
    gateway: RunningGateway,
) -> None:
    path = tmp_path / "history.csv"
    good = history_csv(path, 3_000)
    where = tmp_path / "progress.json"
    with importing_tenant(settings, pulsar_admin, key_store) as (pipe, ingest_key):
        read, _ = key_store.create(pipe.tenant, [Scope.READ], "import test")
        with grpc.insecure_channel(gateway.address) as channel:
            stub = event_service_pb2_grpc.EventServiceStub(channel)
            metadata = [("authorization", f"Bearer {ingest_key}")]
            settled = 0
            for stop_at in (7, 19, None):
                start, _ = resume_point(where, ImportProgress.fresh(path, pipe.tenant), again=False)

                def stop(now: ImportProgress, last: int, limit: Any = stop_at) -> None:
                    nonlocal settled
                    settled += 1
                    if settled == limit:
                        raise Interrupt

                try:
                    run_import(
                        path,
                        ColumnMapping().map,
                        ImportSender(stub.ImportEvents, metadata),
                        where,
                        start,
                        batch_size=100,
                        on_settled=stop,
                    )
                except Interrupt:
                    assert stop_at is not None
            pipe.wait_for(lambda: pipe.counted() == len(good), timeout_s=240, what="counted")
            time.sleep(3)  # anything counted twice would show by now
            assert pipe.counted() == len(good)
            purchases = pipe.query("SELECT sum(purchases) FROM user_item_signals")[0][0]
            assert purchases == len(good)

            serving = personalization_service_pb2_grpc.PersonalizationServiceStub(channel)
            auth = [("authorization", f"Bearer {read.secret}")]
            profile = serving.GetUserProfile(
                ps.GetUserProfileRequest(user_id="u1"), metadata=auth, timeout=10
            )
            assert profile.profile.recent_items
            answer = serving.Recommend(
                ps.RecommendRequest(user_id="u1", k=5), metadata=auth, timeout=10
            )
            assert answer.items


def online_retail_csv(path: Path, rows: int, categorized: int) -> None:
    """An Online Retail file: its first `categorized` rows name four items whose
    descriptions give categories, the rest one item whose description gives none."""
    lines = [",".join(ONLINE_RETAIL_COLUMNS)]
    named = ("WHITE CERAMIC MUG", "PARTY BUNTING", "CHRISTMAS CANDLE", "RED STORAGE BOX")
    start = datetime.fromtimestamp(START_S, tz=UTC)
    for n in range(rows):
        code, description = (
            (f"2000{n % 4}", named[n % 4]) if n < categorized else ("29999", "PLAIN")
        )
        at = (start + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{536000 + n // 4},{code},{description},2,{at},1.25,{17000 + n % 5},UK")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(300)
def test_import_with_catalog_counts_the_events_with_their_items_categories(
    tmp_path: Path,
    settings: Settings,
    pulsar_admin: PulsarAdmin,
    key_store: ApiKeyStore,
    gateway: RunningGateway,
) -> None:
    path = tmp_path / "online_retail.csv"
    online_retail_csv(path, 400, categorized=40)
    with importing_tenant(settings, pulsar_admin, key_store) as (pipe, ingest_key):
        argv = ["import", str(path), "--tenant", pipe.tenant, "--catalog", "--batch-size", "20"]
        assert main([*argv, "--gateway", gateway.address, "--api-key", ingest_key]) == 0
        pipe.wait_for(lambda: pipe.counted() == 400, timeout_s=120, what="counted")
        # Counted with their items' categories: enrich joined the published catalog. That
        # it is published first is tests/unit/history/test_import_catalog.py's: here a
        # pipeline lagging behind the import could hide a catalog published after it.
        categories = dict(pipe.query("SELECT item_id, categories FROM item_categories"))
        assert categories == {
            "20000": ["derived:kitchen"],
            "20001": ["derived:party"],
            "20002": ["derived:christmas", "derived:lighting"],
            "20003": ["derived:storage"],
            "29999": [],
        }
        assert pipe.query("SELECT count(*) FROM user_category_affinities")[0][0] > 0


def test_catalog_with_a_file_that_is_not_online_retail_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.csv"
    history_csv(path, 3)
    argv = ["import", str(path), "--tenant", "acme", "--catalog", "--api-key", "mgk.x.y.z"]
    assert main(argv) == 2
    assert "--catalog reads the items of the Online Retail file only" in capsys.readouterr().err
