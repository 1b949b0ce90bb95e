"""The gateway as a local background process, started and stopped with the rest of the stack."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magnetar.dev import processes
from magnetar.dev.problems import EnvironmentProblem, require_free_ports


def pid_file(home: Path) -> Path:
    return home / "gateway" / "gateway.pid"


def log_file(home: Path) -> Path:
    return home / "gateway" / "gateway.log"


def serving(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def start(home: Path, host: str, port: int, *, timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    address = f"{host}:{port}"
    if processes.read_pid(pid_file(home)) is None:
        require_free_ports({"gateway gRPC": port})
        processes.start_detached(
            [sys.executable, "-m", "magnetar.cli", "gateway", "serve", "--workers", "1"],
            pid_file=pid_file(home),
            log_file=log_file(home),
            cwd=home,
            env={**os.environ, "MAGNETAR_HOME": str(home)},
        )
    while not serving(address):
        if processes.read_pid(pid_file(home)) is None:
            raise EnvironmentProblem(
                f"the gateway exited during start-up: {processes.tail(log_file(home), 5)}",
                f"read {log_file(home)}, then `magnetar dev up` again",
            )
        if time.monotonic() - started > timeout_s:
            raise EnvironmentProblem(
                f"the gateway did not answer health checks on {address}",
                f"read {log_file(home)}; `magnetar dev down` then `magnetar dev up`",
            )
        time.sleep(0.3)
    return time.monotonic() - started


def stop(home: Path) -> bool:
    # SIGTERM: the gateway drains calls in progress (its grace is 10 s) before it exits.
    return processes.stop_group(pid_file(home), grace_s=20.0)
