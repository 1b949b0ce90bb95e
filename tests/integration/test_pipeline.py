"""The real pipeline on the functions worker: one Function that dedupes, enriches and
materializes into PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from functions.deployment import STAGES, PipelineOptions, pipeline
from magnetar import stack_layout
from magnetar.catalog_topic import publish_items
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.topics import PIPELINE_FUNCTION, TenantTopics
from magnetar.v1 import catalog_service_pb2, events_pb2
from tests.integration.pipeline_support import make_event, running_pipeline

pytestmark = pytest.mark.integration


def test_events_flow_into_state_and_repeats_count_once(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin) as pipe:
        producer = pipe.producer()
        first = [make_event(f"e{n}", f"u{n % 3}", f"i{n % 4}") for n in range(30)]
        pipe.send(producer, first)
        pipe.wait_for(lambda: pipe.counted() == 30, what="30 events counted")

        # A client resends ten of them (a new message each, so broker dedup cannot help).
        pipe.send(producer, first[:10])
        pipe.send(producer, [make_event("e-last", "u0", "i1")])
        pipe.wait_for(lambda: pipe.counted() == 31, what="the new event counted")
        time.sleep(2)
        assert pipe.counted() == 31
        activity = pipe.query("SELECT sum(events) FROM user_activity")
        assert activity == [(31,)]


def test_malformed_and_invalid_events_go_to_the_dlq_while_the_rest_flows(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin) as pipe:
        producer = pipe.producer()
        future = make_event(
            "future", "u1", "i1", occurred_at_ms=int(time.time() * 1000) + 86_400_000
        )
        no_id = make_event("", "u1", "i1")
        pipe.send(producer, [future, no_id])
        pipe.send_raw_bytes(b"\xff\xfe not a protobuf", key="u1")
        pipe.send(producer, [make_event("ok-1", "u1", "i1"), make_event("ok-2", "u2", "i2")])

        pipe.wait_for(lambda: pipe.counted() == 2, what="the two valid events")
        dead = pipe.dlq_messages(3)
        reasons = sorted(m.properties().get("dlq_reason", "") for m in dead)
        assert len(dead) == 3, reasons
        assert "UNDECODABLE" in reasons
        assert all(reason for reason in reasons)
        assert pipe.counted() == 2


def test_late_and_out_of_order_events_follow_the_documented_policy(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    now = int(time.time() * 1000)
    hour, day = 3_600_000, 86_400_000
    with running_pipeline(settings, pulsar_admin) as pipe:
        # Out of order: the newest first. One an hour late (accepted, flagged late), one
        # eight days old (beyond the 7-day horizon: dead-lettered as TOO_OLD).
        pipe.send(
            pipe.producer(),
            [
                make_event("new", "u1", "i3", occurred_at_ms=now),
                make_event("older", "u1", "i2", occurred_at_ms=now - 60_000),
                make_event("late", "u1", "i1", occurred_at_ms=now - hour),
                make_event("ancient", "u1", "i0", occurred_at_ms=now - 8 * day),
            ],
        )
        pipe.wait_for(lambda: pipe.counted() == 3, what="three events counted")
        # Only the hour-late one is flagged late.
        metrics = pulsar_admin.function_user_metrics(pipe.tenant, "events", PIPELINE_FUNCTION)
        assert metrics.get("events_late") == 1
        # Recent items are ordered by when events occurred, not by arrival.
        recent = pipe.query("SELECT recent_items FROM user_activity WHERE user_id = 'u1'")
        assert [entry[2] for entry in recent[0][0]] == ["i3", "i2", "i1"]
        dead = pipe.dlq_messages(1)
        assert [m.properties().get("dlq_reason") for m in dead] == ["TOO_OLD"]


def test_restarting_each_function_mid_stream_keeps_counts_exact(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin) as pipe:
        producer = pipe.producer()
        sent = 0
        for round_ in range(3):
            batch = [
                make_event(
                    f"{round_}-{n}", f"u{n % 5}", f"i{n % 7}", type=events_pb2.EVENT_TYPE_PURCHASE
                )
                for n in range(40)
            ]
            pipe.send(producer, batch[:20])
            pulsar_admin.restart_function(pipe.tenant, "events", PIPELINE_FUNCTION)
            pipe.send(producer, batch[20:])
            # and the same events again, as a client retrying across the restart would
            pipe.send(producer, batch[:20])
            sent += 40
        pipe.wait_for(lambda: pipe.counted() == sent, timeout_s=120, what=f"{sent} events")
        time.sleep(3)
        assert pipe.counted() == sent
        assert pipe.query("SELECT sum(purchases) FROM user_activity") == [(sent,)]


def _deploy_with_pulsar_admin_cli(
    admin: PulsarAdmin, tenant: str, options: PipelineOptions
) -> Mapping[str, dict[str, Any]]:
    """The documented route: `magnetar functions render`, then `bin/pulsar-admin` per file."""
    layout = stack_layout.layouts()[0]
    out = layout.run / "rendered" / tenant
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "functions",
            "render",
            "--tenant",
            tenant,
            "--out",
            str(out),
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for stage in STAGES:
        result = subprocess.run(
            [
                str(layout.pulsar_admin),
                "functions",
                "create",
                "--function-config-file",
                str(out / f"{stage}.yaml"),
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PULSAR_CLIENT_CONF": str(layout.client_conf)},
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return pipeline(TenantTopics(tenant), options)


def test_pipeline_deployed_from_config_files_with_pulsar_admin_counts_events(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin, deploy=_deploy_with_pulsar_admin_cli) as pipe:
        config = pulsar_admin.function_config(pipe.tenant, "events", PIPELINE_FUNCTION)
        assert config is not None and config["autoAck"] is False
        pipe.send(pipe.producer(), [make_event(f"c{n}", "u1", f"i{n}") for n in range(5)])
        pipe.wait_for(lambda: pipe.counted() == 5, what="5 events counted")


def test_status_view_shows_a_running_tenant_with_its_counts(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin) as pipe:
        pipe.send(pipe.producer(), [make_event(f"s{n}", "u1", f"i{n}") for n in range(4)])
        pipe.wait_for(lambda: pipe.counted() == 4, what="4 events counted")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "status",
                "--tenant",
                pipe.tenant,
                "--iterations",
                "2",
                "--interval",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert result.returncode == 0, result.stderr
        assert pipe.tenant in result.stdout
        assert f"{PIPELINE_FUNCTION}:1/1" in result.stdout


def test_catalog_items_join_events_and_updates_show_up_within_seconds(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin) as pipe:
        item = catalog_service_pb2.Item(
            item_id="mug", title="Mug", categories=["kitchen"], price=4.5
        )
        publish_items(pipe.client, pipe.tenant, [item])
        pipe.send(pipe.producer(), [make_event("m1", "u1", "mug")])
        pipe.wait_for(lambda: pipe.counted() == 1, what="the mug event counted")
        # The categories in state come from the join with the catalog.
        assert pipe.query("SELECT categories FROM item_categories WHERE item_id = 'mug'") == [
            (["kitchen"],)
        ]

        # An item added while the pipeline runs joins the next events within seconds.
        added = catalog_service_pb2.Item(item_id="lamp", title="Lamp", categories=["home"])
        publish_items(pipe.client, pipe.tenant, [added])
        deadline = time.monotonic() + 10
        joined = False
        attempt = 0
        while not joined and time.monotonic() < deadline:
            attempt += 1
            pipe.send(pipe.producer(), [make_event(f"l{attempt}", "u2", "lamp")])

            def lamp_counted(expected: int = 1 + attempt) -> bool:
                return pipe.counted() == expected

            pipe.wait_for(lamp_counted, what="the lamp event counted")
            categories = "SELECT categories FROM item_categories WHERE item_id = 'lamp'"
            joined = pipe.query(categories) == [(["home"],)]
            time.sleep(0.5)
        assert joined, "the new catalog item never joined"


def test_dedupe_still_drops_repeats_after_the_pipeline_restarts(
    settings: Settings, pulsar_admin: PulsarAdmin
) -> None:
    with running_pipeline(settings, pulsar_admin) as pipe:
        producer = pipe.producer()
        first = [make_event(f"r{n}", f"u{n % 3}", "i1") for n in range(10)]
        pipe.send(producer, first)
        pipe.wait_for(lambda: pipe.counted() == 10, what="10 events counted")
        time.sleep(1.5)  # past the snapshot interval; the next event appends the segment
        pipe.send(producer, [make_event("r-flush", "u1", "i2")])
        pipe.wait_for(lambda: pipe.counted() == 11, what="the flushing event counted")

        pulsar_admin.restart_function(pipe.tenant, "events", PIPELINE_FUNCTION)
        pipe.send(producer, first)  # client repeats, minutes later in real life
        pipe.send(producer, [make_event("r-after", "u2", "i3")])
        pipe.wait_for(lambda: pipe.counted() == 12, what="the new event counted")

        # The 10 repeats were dropped by the restarted instance's window, replayed from
        # function state, not left for the ledger to catch.
        def metrics() -> dict[str, float]:
            return pulsar_admin.function_user_metrics(pipe.tenant, "events", PIPELINE_FUNCTION)

        # The restarted instance reports its metrics a moment after it counts (none at first).
        pipe.wait_for(lambda: bool(metrics()), what="the restarted instance's metrics")
        assert metrics().get("duplicates_dropped") == 10
        assert metrics().get("events_already_counted", 0) == 0
