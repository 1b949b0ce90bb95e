"""A scratch gateway process on free loopback ports, for the benchmarks and the tests.

`gateway_process` starts `magnetar gateway serve` (or another command that takes `--port`)
as a process of its own, running the code of this checkout, hands it over once it answers
health checks, and on the way out sends SIGTERM (it drains its calls) and kills it if it
has not exited within the grace. It gets a metrics port of its own (the stack's gateway
holds the default one) and writes its output to a file rather than a pipe nobody reads, so
a run of an hour cannot fill the pipe and stall it. `GatewayProcess.kill` is a crash
(SIGKILL to its process group) and `start` brings it back on the same port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from magnetar.health_probe import serving
from magnetar.processes import free_port

# One worker: a benchmark reads the CPU and memory of the one process that serves.
SERVE = ("-m", "cli.main", "gateway", "serve", "--workers", "1")
# The admin plane (TenantService), a process of its own like in a deployment.
ADMIN_SERVE = ("-m", "cli.main", "admin", "serve")
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0


class GatewayDidNotStart(RuntimeError):
    """The process exited, or did not answer health checks in time; with its last output."""


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (the state is [0], the parent [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    try:
        fields = _stat(pid)
    except OSError:  # ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


class GatewayProcess:
    """`python <command> --port P <args>` serving on 127.0.0.1:P, its output in `log`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str] = SERVE,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        http_port: int = 0,
        log: Path,
    ) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.log = log
        self._argv = [sys.executable, *command, "--port", str(self.port), *args]
        self._env = {
            **os.environ,
            "MAGNETAR_GATEWAY_INSTANCE": f"{name}-{self.port}",
            "MAGNETAR_METRICS_PORT": str(self.metrics_port),
            "MAGNETAR_ADMIN_METRICS_PORT": str(free_port()),
            "MAGNETAR_HTTP_PORT": str(http_port),  # 0: any free port
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start it (in a session of its own) and return once it answers SERVING."""
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                self._argv,
                env=self._env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not serving(self.address):
            if self._process.poll() is not None:
                raise GatewayDidNotStart(
                    f"{' '.join(self._argv)} exited with {self._process.returncode}:\n"
                    f"{self.output()[-1500:]}"
                )
            if time.monotonic() > deadline:
                raise GatewayDidNotStart(
                    f"{' '.join(self._argv)} not serving in {timeout_s:.0f} s:\n"
                    f"{self.output()[-1500:]}"
                )
            time.sleep(0.2)

    def output(self) -> str:
        """What it has written so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")

    def cpu_s(self) -> float:
        """CPU seconds the process and its running children (its workers) have used (user +
        system, all their threads)."""
        return sum(_cpu_s(pid) for pid in (self.pid, *child_pids(self.pid)))

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL to its group after `grace_s`; its exit status (None if it was
        not running)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._kill_group(process)
        return process.returncode

    def kill(self) -> None:
        """A crash: SIGKILL to the process and whatever it started; answers in flight are lost."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._kill_group(process)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


@contextmanager
def gateway_process(
    name: str,
    command: Sequence[str] = SERVE,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    http_port: int = 0,
) -> Iterator[GatewayProcess]:
    """A started `GatewayProcess` until the block ends, then stopped and its log removed.
    `args` follow `--port P`; `env` adds to (or overrides) its environment; `http_port` is
    its HTTP/JSON door (0: any free port)."""
    with tempfile.TemporaryDirectory(prefix=f"gateway-{name}-") as scratch:
        process = GatewayProcess(
            name, command, args=args, env=env, http_port=http_port, log=Path(scratch) / "log"
        )
        try:
            process.start()
            yield process
        finally:
            process.stop()
