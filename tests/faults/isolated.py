"""A fault scenario in a process of its own, with a hard time limit, and clean-up after it.

A scenario drives clients of four kinds in one process — Pulsar's C++ client, gRPC (sync
clients and an asyncio server), psycopg, the admin API — and signals real processes. Should
anything in it hang, even while holding the GIL (where no Python timeout, not even
pytest-timeout's, can fire), the test must fail saying where, not hold the CI run: in a
clean-clone CI dry run the scenarios, run side by side in the pytest process, went silent
for 14 minutes, with two materialize instances still stopped by SIGSTOP.

So the child arms ``faulthandler.dump_traceback_later`` — a C watchdog thread that needs no
GIL — which, at the limit, writes every thread's stack to stderr and ends the process. The
parent kills it if it is still there a little later, then cleans up whatever the scenario
left: stopped instances get SIGCONT, its tenants (the child lists them in a file as it
creates them) are removed. The failure message carries the child's last progress lines and,
on a timeout, the stacks.

Used by ``tests/faults/test_function_faults.py``; run by hand with
``python -m tests.faults.isolated <kill|sigstop|gateway|rebuild> '<RunOptions as JSON>' <out.json>
<limit s>``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tests.faults import injectors
from tests.faults.harness import TENANT_LOG_ENV, Audit, remove_tenant
from tests.faults.scenarios import RunOptions, ScenarioResult

REPO = Path(__file__).resolve().parents[2]
# After the child's own limit: time for faulthandler to write and for the process to exit.
KILL_GRACE_S = 20


def _scenarios() -> dict[str, Callable[[Settings, PulsarAdmin, RunOptions], list[ScenarioResult]]]:
    from tests.faults.gateway_restart import gateway_restart
    from tests.faults.rebuild import rebuild_during_ingest
    from tests.faults.scenarios import function_kill, pipeline_pause

    return {
        "kill": function_kill,
        "sigstop": pipeline_pause,
        "gateway": gateway_restart,
        "rebuild": rebuild_during_ingest,
    }


def _to_json(result: ScenarioResult) -> dict[str, Any]:
    data = asdict(result)
    data["audit"]["details"] = dict(result.audit.details)
    return data


def _from_json(data: dict[str, Any]) -> ScenarioResult:
    return ScenarioResult(**{**data, "audit": Audit(**data["audit"])})


def _options_json(options: RunOptions) -> str:
    return json.dumps(asdict(options))


def _options(text: str) -> RunOptions:
    data = json.loads(text)
    known = {f.name for f in fields(RunOptions)}
    values = {k: v for k, v in data.items() if k in known}
    values["controls"] = tuple(values.get("controls", (False, True)))
    return RunOptions(**values)


def child(argv: list[str]) -> int:
    name, options_text, out_path, limit_text = argv
    faulthandler.dump_traceback_later(float(limit_text), exit=True)
    out = Path(out_path)
    try:
        settings = Settings.load()
        with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
            results = _scenarios()[name](settings, admin, _options(options_text))
        out.write_text(json.dumps({"results": [_to_json(r) for r in results]}))
        return 0
    except BaseException:
        out.write_text(json.dumps({"error": traceback.format_exc()}))
        return 1


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    # The C++ client's and gRPC's own log lines are noise here; keep ours and the stacks.
    kept = [
        line
        for line in text.splitlines()
        if not line.startswith(("I1", "W1", "E1", "20")) or "[faults" in line
    ]
    return "\n".join(kept[-lines:])


def clean_up(settings: Settings, tenants: list[str]) -> list[str]:
    """Whatever a scenario left behind: stopped instances continued, tenants removed."""
    notes: list[str] = []
    for instance in injectors.function_instances():
        if instance.tenant in tenants:
            with contextlib.suppress(ProcessLookupError):
                os.kill(instance.pid, signal.SIGCONT)
    from tests.integration.gateway_harness import remove_tenant_row

    with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
        existing = set(admin.tenants())
        for tenant in tenants:
            if tenant in existing:
                try:
                    remove_tenant(admin, tenant)
                    notes.append(f"removed left-over tenant {tenant}")
                except Exception as exc:
                    notes.append(f"could not remove {tenant}: {exc!r}")
            with contextlib.suppress(Exception):
                remove_tenant_row(settings, tenant)
    return notes


def run_isolated(
    settings: Settings, name: str, options: RunOptions, limit_s: float
) -> list[ScenarioResult]:
    """Run scenario `name` in a child process; its results, or an AssertionError that says
    what happened (the child's progress lines, its stacks if it ran out of time)."""
    with tempfile.TemporaryDirectory(prefix="magnetar-fault-") as scratch:
        out = Path(scratch) / "result.json"
        stderr_path = Path(scratch) / "stderr.txt"
        tenant_log = Path(scratch) / "tenants.txt"
        env = {**os.environ, TENANT_LOG_ENV: str(tenant_log), "PYTHONFAULTHANDLER": "1"}
        argv = [sys.executable, "-m", "tests.faults.isolated"]
        argv += [name, _options_json(options), str(out), str(limit_s)]
        started = time.monotonic()
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=stderr, stderr=stderr, start_new_session=True
            )
            try:
                process.wait(limit_s + KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
        took = time.monotonic() - started
        tenants = tenant_log.read_text().split() if tenant_log.exists() else []
        notes = clean_up(settings, tenants)
        try:
            outcome = json.loads(out.read_text())
        except (OSError, ValueError):
            outcome = {}
        if "results" in outcome:
            return [_from_json(r) for r in outcome["results"]]
        what = (
            f"ran out of its {limit_s:.0f}s (stacks below)"
            if took >= limit_s
            else f"failed after {took:.0f}s (exit {process.returncode})"
        )
        raise AssertionError(
            f"fault scenario {name!r} {what}\n{outcome.get('error', '')}\n"
            f"--- its output (last lines) ---\n{_tail(stderr_path, 150)}\n"
            f"--- clean-up --- {notes}"
        )


if __name__ == "__main__":
    raise SystemExit(child(sys.argv[1:]))
