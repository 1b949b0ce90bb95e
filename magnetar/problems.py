"""Problems with the environment (a missing program, a port in use, a bad setting), each with
the fix a user should apply; the command line prints them as one line and exits 2."""

from __future__ import annotations

import shutil
import socket


class EnvironmentProblem(Exception):
    """Something outside the project is missing or in the way; `fix` tells what to do."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} — fix: {fix}")
        self.problem = problem
        self.fix = fix


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def require_free_ports(ports: dict[str, int]) -> None:
    """Fail before starting anything when another program holds one of our ports."""
    for role, port in ports.items():
        if port_in_use(port):
            raise EnvironmentProblem(
                f"port {port} ({role}) is already in use by another program",
                f"stop that program (see `ss -ltnp | grep :{port}`) or run `magnetar dev down` "
                "if it is an earlier Magnetar stack",
            )


def require_program(name: str, fix: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EnvironmentProblem(f"`{name}` was not found on PATH", fix)
    return path
