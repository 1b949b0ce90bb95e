"""A gateway as its own process for a benchmark, on free loopback ports, stopped afterwards.

Every benchmark that calls through gRPC starts its gateway here (as in production, a process
of its own, the code of this checkout): `magnetar gateway serve` unless told another command.
It answers health checks before it is handed over, gets a metrics port of its own (the
stack's gateway holds the default one), and writes its output to a file rather than a pipe
nobody reads, so a run of an hour cannot fill the pipe and stall the gateway. On the way out
it is sent SIGTERM (it drains its calls) and killed if it has not exited within 30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from magnetar.health_probe import serving
from magnetar.processes import free_port

# One worker: a benchmark reads the CPU and memory of the one process that serves.
SERVE = ("-m", "cli.main", "gateway", "serve", "--workers", "1")
# The admin plane (TenantService), a process of its own like in a deployment.
ADMIN_SERVE = ("-m", "cli.main", "admin", "serve")
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class GatewayProcess:
    address: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds the gateway process has used (user + system, all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def gateway_process(
    name: str, command: Sequence[str] = SERVE, *, http_port: int = 0
) -> Iterator[GatewayProcess]:
    """`python <command> --port P` serving on 127.0.0.1:P until the block ends; its HTTP/JSON
    door on `http_port` (0: any free port)."""
    port = free_port()
    env = {
        **os.environ,
        "MAGNETAR_GATEWAY_INSTANCE": f"bench-{name}-{port}",
        "MAGNETAR_METRICS_PORT": str(free_port()),
        "MAGNETAR_ADMIN_METRICS_PORT": str(free_port()),
        "MAGNETAR_HTTP_PORT": str(http_port),
    }
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            [sys.executable, *command, "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        address = f"127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not serving(address):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    tail = "".join(output.readlines()[-20:])
                    raise SystemExit(f"the gateway did not start:\n{tail}")
                time.sleep(0.2)
            yield GatewayProcess(address, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
