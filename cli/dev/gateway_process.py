"""The gateway and the admin plane as local background processes, started and stopped with the
rest of the stack. Each is `magnetar <component> serve` ("gateway" or "admin"), with its pid
and log under `<home>/<component>/`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from magnetar import processes
from magnetar.health_probe import serving
from magnetar.problems import EnvironmentProblem, require_free_ports


def pid_file(home: Path, component: str = "gateway") -> Path:
    return home / component / f"{component}.pid"


def log_file(home: Path, component: str = "gateway") -> Path:
    return home / component / f"{component}.log"


def start(
    home: Path, host: str, port: int, *, component: str = "gateway", timeout_s: float = 60.0
) -> float:
    started = time.monotonic()
    address = f"{host}:{port}"
    pids, log = pid_file(home, component), log_file(home, component)
    if processes.read_pid(pids) is None:
        require_free_ports({f"{component} gRPC": port})
        processes.start_detached(
            # One gateway process in the dev stack: its ports are the documented ones.
            [sys.executable, "-m", "cli.main", component, "serve"]
            + (["--workers", "1"] if component == "gateway" else []),
            pid_file=pids,
            log_file=log,
            cwd=home,
            env={**os.environ, "MAGNETAR_HOME": str(home)},
        )
    while not serving(address):
        if processes.read_pid(pids) is None:
            raise EnvironmentProblem(
                f"the {component} exited during start-up: {processes.tail(log, 5)}",
                f"read {log}, then `magnetar dev up` again",
            )
        if time.monotonic() - started > timeout_s:
            raise EnvironmentProblem(
                f"the {component} did not answer health checks on {address}",
                f"read {log}; `magnetar dev down` then `magnetar dev up`",
            )
        time.sleep(0.3)
    return time.monotonic() - started


def stop(home: Path, component: str = "gateway") -> bool:
    # SIGTERM: calls in progress drain (the gateway's grace is 10 s, the admin's 30 s).
    return processes.stop_group(pid_file(home, component), grace_s=40.0)
