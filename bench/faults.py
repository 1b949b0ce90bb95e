"""`magnetar bench faults`: the fault suite as a table — lost, duplicated, time to recover.

Runs the scenarios of ``tests/faults`` (they live with the tests, which import them too) on
the local stack, each with its control run (the protection off), and prints one row per run:
scenario, events accepted, lost, duplicated, unexpected, recovered, how long the fault lasted
and how long the pipeline took to catch up after it (time to recover = the two together).

The non-disruptive scenarios (function instances killed or stopped, the in-process gateway
restarted under streaming clients, a tenant's state rebuilt under its stream) run by default; the broker
kill and the PostgreSQL immediate stop take the shared stack down for everyone, so they run
only when named (``--scenario broker --scenario postgres``) and refuse to start while another
pytest run is going. The stack is brought back with ``magnetar dev up`` afterwards.

Needs a source checkout (the scenarios are under ``tests/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.report import BenchReport

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (
    "scenario",
    "run",
    "events",
    "lost",
    "duplicated",
    "unexpected",
    "recovered",
    "fault s",
    "catch-up s",
    "time to recover s",
    "notes",
)
SAFE = ("kill", "sigstop", "gateway", "rebuild")
DISRUPTIVE = ("postgres", "broker")


def _scenarios() -> dict[str, Callable[..., Any]]:
    if not (REPO / "tests" / "faults" / "scenarios.py").exists():
        raise SystemExit("magnetar bench faults needs a source checkout (tests/faults)")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.faults import scenarios
    from tests.faults.gateway_restart import gateway_restart
    from tests.faults.rebuild import rebuild_during_ingest

    return {
        "kill": scenarios.function_kill,
        "sigstop": scenarios.pipeline_pause,
        "gateway": gateway_restart,
        "rebuild": rebuild_during_ingest,
        "postgres": scenarios.postgres_restart,
        "broker": scenarios.broker_kill,
    }


def _options(name: str, args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from tests.faults.scenarios import SCENARIO_OPTIONS

    options = SCENARIO_OPTIONS[name]
    return replace(options, events=args.events) if args.events else options


def _wait_for_quiet_stack(timeout_s: float) -> None:
    from tests.faults.injectors import others_testing

    deadline = time.monotonic() + timeout_s
    while others := others_testing():
        if time.monotonic() > deadline:
            raise SystemExit(f"other test runs are using the stack: {others}")
        print(f"waiting for other test runs to finish: {len(others)}", flush=True)
        time.sleep(10)


def run(args: argparse.Namespace) -> BenchReport:
    from magnetar.pulsar_admin import PulsarAdmin
    from magnetar.settings import Settings

    functions = _scenarios()  # puts the checkout on sys.path
    from tests.faults import injectors

    chosen = args.scenario or list(SAFE)
    report = BenchReport("faults", COLUMNS)
    settings = Settings.load()
    for repeat in range(args.repeat):
        for name in chosen:
            if name in DISRUPTIVE:
                _wait_for_quiet_stack(args.wait_s)
            print(f"[{repeat + 1}/{args.repeat}] {name} …", flush=True)
            try:
                with PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token) as admin:
                    results = functions[name](settings, admin, _options(name, args))
            finally:
                if name in DISRUPTIVE:
                    injectors.dev_up()
            for result in results:
                row = result.row()
                scenario = row.pop("scenario").removesuffix(" [control]")
                report.add(
                    scenario=scenario,
                    run="control" if result.control else f"#{repeat + 1}",
                    **{k: v for k, v in row.items() if k in COLUMNS},
                )
    report.notes.append(
        "control = the pipeline without its processed-event ledger (user config ledger=off; "
        "for the gateway also dedupe with a 1 ms window): it must show duplicates; "
        "the protected runs must show lost = duplicated = unexpected = 0"
    )
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SAFE + DISRUPTIVE,
        help=f"repeatable; default: {' '.join(SAFE)} (the disruptive ones only when named)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario")
    parser.add_argument("--events", type=int, default=0, help="events per run (0: default)")
    parser.add_argument(
        "--wait-s", type=float, default=900, help="how long to wait for other test runs"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run, print, save; exit 1 unless every protected run is exact and every control fails."""
    report = run(args)
    report.print()
    print(f"results: {report.save()}")
    protected = [r for r in report.rows if r["run"] != "control"]
    controls = [r for r in report.rows if r["run"] == "control"]
    exact = all(r["lost"] == 0 and r["duplicated"] == 0 and r["unexpected"] == 0 for r in protected)
    failing_controls = all(r["duplicated"] > 0 for r in controls)
    return 0 if exact and failing_controls else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="magnetar bench faults", description=__doc__)
    add_arguments(parser)
    return handle(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
