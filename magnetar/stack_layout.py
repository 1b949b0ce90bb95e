"""Where a Magnetar home keeps the local stack's files: Pulsar's and PostgreSQL's.

Paths only: nothing here starts, stops or reads a process. The dev stack (`cli/dev/`) lays the
files out there; the benchmarks find the services' pid files there without importing the
command line.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from magnetar.settings import PULSAR_VERSION, magnetar_home

# The local cluster's port, apart from a system PostgreSQL's 5432.
POSTGRES_PORT = 55432


@dataclass(frozen=True)
class PulsarLayout:
    """Where one Magnetar home keeps its Pulsar: distribution, config, data, logs, keys."""

    home: Path
    version: str

    @property
    def downloads(self) -> Path:
        return self.home / "downloads"

    @property
    def tarball(self) -> Path:
        return self.downloads / f"pulsar-server-distribution-{self.version}-bin.tar.gz"

    @property
    def dist(self) -> Path:
        return self.home / "dist" / f"apache-pulsar-{self.version}"

    @property
    def run(self) -> Path:
        return self.home / "pulsar"

    @property
    def logs(self) -> Path:
        return self.run / "logs"

    @property
    def pid_file(self) -> Path:
        return self.run / "standalone.pid"

    @property
    def secret_key(self) -> Path:
        return self.run / "secrets" / "token-secret.key"

    @property
    def superuser_token(self) -> Path:
        return self.run / "secrets" / "superuser.token"

    @property
    def standalone_conf(self) -> Path:
        return self.run / "conf" / "standalone.conf"

    @property
    def worker_conf(self) -> Path:
        return self.run / "conf" / "functions_worker.yml"

    @property
    def pulsar_admin(self) -> Path:
        return self.dist / "bin" / "pulsar-admin"

    @property
    def client_conf(self) -> Path:
        """A client.conf for ``bin/pulsar-admin`` and ``bin/pulsar-client`` with the token."""
        return self.run / "conf" / "client.conf"


@dataclass(frozen=True)
class PostgresLayout:
    """Where one Magnetar home keeps its PostgreSQL cluster (below /var/tmp under root)."""

    home: Path
    port: int = POSTGRES_PORT

    @property
    def root(self) -> Path:
        if os.geteuid() != 0:
            return self.home / "postgres"
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"magnetar-postgres-{digest}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def secrets_file(self) -> Path:
        return self.home / "postgres-passwords"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"


def layouts(home: Path | None = None) -> tuple[PulsarLayout, PostgresLayout]:
    home = home or magnetar_home()
    return PulsarLayout(home, PULSAR_VERSION), PostgresLayout(home)
