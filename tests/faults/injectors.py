"""The faults themselves: signals to real processes of the local stack, and restarts.

Function instances are found by their command line: the worker's process runtime starts
``python_instance_main.py`` with ``--function_details`` (JSON naming tenant, namespace and
function) and ``--instance_id``. The broker is the process group in
``.magnetar/pulsar/standalone.pid`` (broker, bookie, metadata store, functions worker and
every function instance it spawned). PostgreSQL is stopped with its own ``pg_ctl -m
immediate`` (no shutdown checkpoint: recovery replays the WAL on the next start).

Everything restarts through ``magnetar dev up``, the command a developer would run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cli.dev import postgres
from magnetar import processes, stack_layout
from magnetar.topics import PIPELINE_FUNCTION

REPO = Path(__file__).resolve().parents[2]
INSTANCE_MAIN = "python_instance_main.py"


@dataclass(frozen=True)
class FunctionInstance:
    pid: int
    tenant: str
    namespace: str
    name: str
    instance_id: int


def _argument(argv: list[str], flag: str) -> str | None:
    try:
        return argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def function_instances() -> list[FunctionInstance]:
    """Every running Python function instance of the local worker."""
    found: list[FunctionInstance] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(arg.endswith(INSTANCE_MAIN) for arg in argv[:3]):
            continue
        details_text = _argument(argv, "--function_details")
        if details_text is None:
            continue
        try:
            details = json.loads(details_text.strip("'"))
        except ValueError:
            continue
        found.append(
            FunctionInstance(
                pid=int(entry.name),
                tenant=str(details.get("tenant", "")),
                namespace=str(details.get("namespace", "")),
                name=str(details.get("name", "")),
                instance_id=int(_argument(argv, "--instance_id") or 0),
            )
        )
    return found


def find_instance(
    tenant: str, name: str, *, namespace: str = "events", timeout_s: float = 60
) -> FunctionInstance:
    """The (first) running instance of `<tenant>/<namespace>/<name>`; waits for one to exist."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        matches = [
            i
            for i in function_instances()
            if (i.tenant, i.namespace, i.name) == (tenant, namespace, name)
            and processes.is_alive(i.pid)
        ]
        if matches:
            # Right after a restart the old process may still be on its way out: the newest.
            return max(matches, key=lambda i: (-i.instance_id, _start_ticks(i.pid)))
        time.sleep(0.2)
    raise AssertionError(f"no running instance of {tenant}/{namespace}/{name}")


def _start_ticks(pid: int) -> int:
    """When the process started (clock ticks since boot); 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def kill_instance(tenant: str, name: str) -> FunctionInstance:
    """`kill -9` one instance of a stage; the worker notices and starts a new one."""
    instance = find_instance(tenant, name)
    os.kill(instance.pid, signal.SIGKILL)
    return instance


def kill_after_commit(
    tenant: str, database_url: str, name: str = PIPELINE_FUNCTION, timeout_s: float = 10
) -> FunctionInstance:
    """`kill -9` the stage right after one of its commits becomes visible in PostgreSQL.

    The moment the pipeline is most exposed: its batch is committed, and the
    acknowledgements for it are still with the client (it groups them for up to 100 ms). A
    blind kill mostly lands elsewhere — between batches, or while the stage waits — and
    then no committed event comes back. Falls back to a blind kill after `timeout_s`.
    """
    instance = find_instance(tenant, name)
    wait_for_commit(tenant, database_url, timeout_s)
    os.kill(instance.pid, signal.SIGKILL)
    return instance


def stop_after_commit(
    tenant: str, database_url: str, name: str = PIPELINE_FUNCTION, timeout_s: float = 10
) -> FunctionInstance:
    """SIGSTOP the stage right after one of its commits becomes visible in PostgreSQL (see
    `kill_after_commit`): its acknowledgements are then still with the stopped client."""
    instance = find_instance(tenant, name)
    wait_for_commit(tenant, database_url, timeout_s)
    os.kill(instance.pid, signal.SIGSTOP)
    return instance


def wait_for_commit(tenant: str, database_url: str, timeout_s: float) -> None:
    """Return as soon as the tenant's counted events change, or after `timeout_s`."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Session-level tenant: this probe connection serves one tenant only.
        conn.execute("SELECT set_config('magnetar.tenant', %s, false)", (tenant,))
        query = "SELECT coalesce(sum(events), 0) FROM user_activity"
        baseline = conn.execute(query).fetchone()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and conn.execute(query).fetchone() == baseline:
            time.sleep(0.002)


def wait_replaced(instance: FunctionInstance, timeout_s: float = 120) -> float:
    """Seconds until a new process runs the same function instance."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        for other in function_instances():
            same = (other.tenant, other.namespace, other.name, other.instance_id) == (
                instance.tenant,
                instance.namespace,
                instance.name,
                instance.instance_id,
            )
            if same and other.pid != instance.pid and processes.is_alive(other.pid):
                return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{instance} was not restarted within {timeout_s:.0f}s")


def pause_instances(instances: list[FunctionInstance], seconds: float) -> None:
    """SIGSTOP the instances (again: stopping a stopped process changes nothing) for
    `seconds`, then SIGCONT those still there (the worker may have replaced one)."""
    for instance in instances:
        os.kill(instance.pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        for instance in instances:
            with contextlib.suppress(ProcessLookupError):
                os.kill(instance.pid, signal.SIGCONT)


def broker_pid() -> int:
    pid = processes.read_pid(stack_layout.layouts()[0].pid_file)
    if pid is None:
        raise AssertionError("the Pulsar standalone is not running")
    return pid


def kill_broker() -> None:
    """`kill -9` the standalone's whole process group and wait until it is gone."""
    pid = broker_pid()
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while processes.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if processes.is_alive(pid):
        raise AssertionError(f"broker {pid} survived SIGKILL")


def postgres_immediate_stop() -> None:
    """`pg_ctl stop -m immediate`: the server exits without a checkpoint, like a crash."""
    layout = stack_layout.layouts()[1]
    binaries = postgres.find_binaries()
    if binaries is None:
        raise AssertionError("pg_ctl not found")
    argv = [str(binaries / "pg_ctl"), "-D", str(layout.data), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", postgres.SERVICE_USER, "--", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"pg_ctl stop failed: {result.stderr.strip()}")


def dev_up(timeout_s: float = 420, attempts: int = 5) -> float:
    """`magnetar dev up` (starts whatever is down); seconds it took.

    Retried a few times: right after an immediate stop, `dev up` can reach its migrations
    while PostgreSQL is still replaying WAL ("not yet accepting connections") and fail —
    a developer would run it again, and so do we (bounded).
    """
    started = time.monotonic()
    failure = ""
    for _ in range(attempts):
        remaining = timeout_s - (time.monotonic() - started)
        if remaining <= 0:
            break
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "dev", "up"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=remaining,
            check=False,
        )
        if result.returncode == 0:
            return time.monotonic() - started
        failure = (result.stdout[-300:] + result.stderr[-700:]).strip()
        time.sleep(3)
    raise AssertionError(f"magnetar dev up failed {attempts} times: {failure}")


def _ancestors(pid: int) -> set[int]:
    """`pid` and every process above it (a pytest run's shell, its `timeout` wrapper...)."""
    found = {pid}
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.add(pid)
    return found


def others_testing() -> list[str]:
    """Command lines of pytest runs other than this one (and the shells that started it)."""
    mine = _ancestors(os.getpid())
    found: list[str] = []
    result = subprocess.run(
        ["pgrep", "-af", "pytest"], capture_output=True, text=True, timeout=10, check=False
    )
    for line in result.stdout.splitlines():
        pid_text, _, command = line.partition(" ")
        if not pid_text.isdigit() or int(pid_text) in mine or command.startswith("pgrep"):
            continue
        # Only processes that run pytest, not shells or editors that mention it.
        if "pytest" in command.split(" ", 2)[0] or "bin/pytest" in command:
            found.append(line)
    return found
