"""The soak's memory figures: processes named from /proc, kept per name, laid out over time."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.process_memory import (
    BROKER,
    CLIENT,
    GATEWAY,
    POSTGRES,
    POSTGRES_PSS,
    Group,
    MemoryHistory,
    ProcessInfo,
    Roles,
    add_postgres_pss,
    classify,
    function_instance,
    read_processes,
    report_points,
    tenant_instances_kb,
)


def instance(pid: int, tenant: str, number: str = "0") -> ProcessInfo:
    details = json.dumps({"tenant": tenant, "namespace": "events", "name": "pipeline"})
    argv = (
        "python3",
        "/opt/pulsar/instances/python-instance/python_instance_main.py",
        "--py",
        f"/data/function-packages/{tenant}/events/pipeline/0/pipeline.py",
        "--instance_id",
        number,
        "--function_details",
        f"'{details}'",  # as the worker passes it: quoted
    )
    return ProcessInfo(pid, 100, argv, 80_000 + pid)


PROCESSES = [
    ProcessInfo(100, 1, ("/usr/bin/java", "-cp", "pulsar"), 900_000),
    instance(101, "soak-tenant"),
    instance(102, "demo"),  # another tenant's: not the soak's business
    instance(103, "churned"),
    ProcessInfo(200, 1, ("/usr/lib/postgresql/15/bin/postgres", "-D", "/data"), 50_000),
    ProcessInfo(201, 200, ("postgres: walwriter",), 20_000),
    ProcessInfo(202, 200, ("postgres: magnetar_app magnetar idle",), 130_000),
    ProcessInfo(300, 1, ("python", "-m", "cli.main", "gateway", "serve"), 120_000),
    ProcessInfo(400, 1, ("python", "-m", "cli.main", "bench", "soak"), 150_000),
    ProcessInfo(500, 1, ("bash",), 4_000),
]
ROLES = Roles(
    broker_pid=100,
    postmaster_pid=200,
    gateway_pid=300,
    client_pid=400,
    soak_tenant="soak-tenant",
    onboarded_tenants={"churned"},
)


def test_every_process_of_the_run_is_named_and_nothing_else() -> None:
    groups = classify(PROCESSES, ROLES)

    assert groups == {
        BROKER: Group((100,), 900_000),
        "pipeline, soak tenant #0": Group((101,), 80_101),
        "pipeline, onboarded tenant #0": Group((103,), 80_103, steady=False),
        POSTGRES: Group((200, 201, 202), 200_000, steady=False),
        GATEWAY: Group((300,), 120_000),
        CLIENT: Group((400,), 150_000),
    }


def test_the_broker_is_the_jvm_below_a_wrapper_in_the_pid_file() -> None:
    wrapper = ProcessInfo(90, 1, ("/bin/sh", "bin/pulsar", "standalone"), 3_000)
    jvm = ProcessInfo(91, 90, ("java", "-Xmx2g"), 800_000)

    groups = classify([wrapper, jvm], Roles(90, None, None, 1, "t"))

    assert groups == {BROKER: Group((91,), 800_000)}


def test_services_that_are_not_running_are_absent_not_zero() -> None:
    groups = classify([instance(101, "soak-tenant")], ROLES)

    assert list(groups) == ["pipeline, soak tenant #0"]


def test_a_function_instance_is_recognised_only_with_its_details() -> None:
    assert function_instance(instance(1, "acme", "2").argv) == ("acme", "pipeline", "2")
    assert function_instance(("python3", "python_instance_main.py", "--py", "x.py")) is None
    assert function_instance(("python", "-m", "pytest", "--function_details", "{}")) is None


def test_postgres_pss_only_when_every_member_was_read() -> None:
    groups = classify(PROCESSES, ROLES)

    add_postgres_pss(groups, {200: 10_000, 201: 2_000, 202: 30_000})
    assert groups[POSTGRES_PSS].kb == 42_000

    partial = classify(PROCESSES, ROLES)
    add_postgres_pss(partial, {200: 10_000, 201: None, 202: 30_000})
    assert POSTGRES_PSS not in partial


def test_history_keeps_each_name_in_mb_with_gaps_where_it_was_absent() -> None:
    history = MemoryHistory()
    history.add(0, {GATEWAY: Group((300,), 102_400)})
    history.add(
        60, {GATEWAY: Group((300,), 112_640), "pipeline, soak tenant #0": Group((7,), 51_200)}
    )
    history.add(120, {GATEWAY: Group((300,), 153_600)})

    assert history.series == {
        GATEWAY: [100.0, 110.0, 150.0],
        "pipeline, soak tenant #0": [None, 50.0, None],
    }
    assert history.growth_mb(GATEWAY) == 50.0
    assert history.growth_mb("pipeline, soak tenant #0") is None  # one figure: no growth


def test_a_new_pid_behind_a_steady_name_is_a_restart_but_not_for_churned_or_postgres() -> None:
    history = MemoryHistory()
    for pid in (7, 7, 8, 9):
        history.add(
            0,
            {
                "pipeline, soak tenant #0": Group((pid,), 1_024),
                "pipeline, onboarded tenant #0": Group((pid,), 1_024, steady=False),
                POSTGRES: Group((200, pid), 1_024, steady=False),
            },
        )

    assert history.restarts == {"pipeline, soak tenant #0": 2}


def test_report_points_are_the_first_each_interval_and_the_last() -> None:
    minutes = [m * 60.0 for m in range(0, 13)]

    assert report_points(minutes, 300) == [0, 5, 10, 12]
    assert report_points([0.0, 61.0, 119.0], 300) == [0, 2]
    assert report_points([0.0], 300) == [0]
    assert report_points([], 300) == []


def test_the_table_shows_each_process_at_the_report_points_with_growth_max_and_restarts() -> None:
    history = MemoryHistory()
    for minute, (gateway_kb, broker_kb) in enumerate(
        [(100, 900), (110, 950), (120, 900), (130, 910), (140, 920), (150, 930), (160, 940)]
    ):
        history.add(
            minute * 60.0,
            {GATEWAY: Group((1,), gateway_kb * 1024), BROKER: Group((2,), broker_kb * 1024)},
        )

    columns, rows = history.table(every_s=300)

    assert columns == ["process (RSS MB)", "0 min", "5 min", "6 min", "growth", "max", "restarts"]
    assert rows == [  # the broker first: services in a fixed order, then the functions
        {
            "process (RSS MB)": BROKER,
            "0 min": 900.0,
            "5 min": 930.0,
            "6 min": 940.0,
            "growth": 40.0,
            "max": 950.0,
            "restarts": 0,
        },
        {
            "process (RSS MB)": GATEWAY,
            "0 min": 100.0,
            "5 min": 150.0,
            "6 min": 160.0,
            "growth": 60.0,
            "max": 160.0,
            "restarts": 0,
        },
    ]


def test_reading_proc_finds_this_process_with_its_resident_set(tmp_path: Path) -> None:
    found = {p.pid: p for p in read_processes()}

    me = found[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.rss_kb > 1_000
    assert "pytest" in " ".join(me.argv)


def test_a_process_that_vanishes_while_read_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "123").mkdir()  # a pid directory with nothing left to read
    (tmp_path / "self").mkdir()

    assert read_processes(tmp_path) == []


def test_an_onboarded_tenants_instances_are_summed_when_running() -> None:
    assert tenant_instances_kb(PROCESSES, "churned") == 80_103
    assert tenant_instances_kb([*PROCESSES, instance(104, "churned", "1")], "churned") == 160_207
    assert tenant_instances_kb(PROCESSES, "gone") is None
