"""A private PostgreSQL cluster for the project, started only when nothing answers at the
configured URL.

PostgreSQL refuses to run as root, and CI runs as root in a private temporary folder the
service user cannot enter; so under root the cluster lives in a folder of its own below
/var/tmp, owned by the ``postgres`` system user. Roles:

* ``magnetar_owner`` owns the database and runs migrations;
* ``magnetar_app`` is what the gateway and functions use: not owner, NOBYPASSRLS, so
  row-level security applies to it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from magnetar import processes
from magnetar.private_files import private_folder, write_private
from magnetar.problems import EnvironmentProblem, port_in_use
from magnetar.stack_layout import PostgresLayout

SERVICE_USER = "postgres"
DATABASE = "magnetar"
OWNER_ROLE = "magnetar_owner"
APP_ROLE = "magnetar_app"


def find_binaries() -> Path | None:
    """The folder with initdb/pg_ctl/postgres: PATH first, then Debian's layout, newest first."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    # MAGNETAR_POSTGRES_ROOT replaces Debian's /usr/lib/postgresql (other layouts, tests).
    root = Path(os.environ.get("MAGNETAR_POSTGRES_ROOT", "/usr/lib/postgresql"))
    candidates = sorted(
        root.glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name),
        reverse=True,
    )
    return candidates[0].parent if candidates else None


def ensure_binaries() -> Path:
    found = find_binaries()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise EnvironmentProblem(
            "PostgreSQL server binaries (initdb, pg_ctl) are missing and cannot be installed "
            "with apt-get here",
            "install PostgreSQL 14+ server binaries, or set MAGNETAR_DATABASE_URL and "
            "MAGNETAR_DATABASE_OWNER_URL to a running server",
        )
    print("installing PostgreSQL with apt-get…", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "postgresql"]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EnvironmentProblem(
                f"`{' '.join(argv)}` failed: {result.stderr.strip().splitlines()[-1:]}",
                "install PostgreSQL server binaries by hand or point MAGNETAR_DATABASE_URL at a server",
            )
    found = find_binaries()
    if found is None:
        raise EnvironmentProblem(
            "apt-get installed postgresql but initdb is still missing",
            "check `dpkg -L postgresql-common`",
        )
    return found


def _as_service_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SERVICE_USER, "--", *argv]


def _passwords(layout: PostgresLayout) -> dict[str, str]:
    if layout.secrets_file.exists():
        pairs = (
            line.split("=", 1) for line in layout.secrets_file.read_text().splitlines() if line
        )
        return {k: v for k, v in pairs}
    values = {role: secrets.token_urlsafe(18) for role in ("postgres", OWNER_ROLE, APP_ROLE)}
    write_private(layout.secrets_file, "".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def urls(layout: PostgresLayout) -> dict[str, str]:
    pw = _passwords(layout)
    base = f"127.0.0.1:{layout.port}/{DATABASE}"
    return {
        "database_url": f"postgresql://{APP_ROLE}:{pw[APP_ROLE]}@{base}",
        "database_owner_url": f"postgresql://{OWNER_ROLE}:{pw[OWNER_ROLE]}@{base}",
    }


def answers(url: str) -> bool:
    parts = urlsplit(url)
    return port_in_use(parts.port or 5432, parts.hostname or "127.0.0.1")


def running(layout: PostgresLayout) -> bool:
    try:
        pid = int(layout.pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    return processes.is_alive(pid)


def preflight(layout: PostgresLayout) -> None:
    """Binaries (installed with apt-get when missing) before anything else starts."""
    if not running(layout):
        ensure_binaries()


def start(layout: PostgresLayout) -> float:
    """initdb (once), start, create roles and database. Returns seconds taken."""
    started = time.monotonic()
    if orphaned(layout):
        _discard(layout)
    if running(layout):
        return 0.0
    if port_in_use(layout.port):
        raise EnvironmentProblem(
            f"port {layout.port} (PostgreSQL) is in use by another program",
            f"stop it (`ss -ltnp | grep :{layout.port}`) or point MAGNETAR_DATABASE_URL at it",
        )
    binaries = ensure_binaries()
    fresh = not (layout.data / "PG_VERSION").exists()
    if fresh:
        _init_cluster(layout, binaries)
    result = subprocess.run(
        _as_service_user(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(layout.data),
                "-l",
                str(layout.log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EnvironmentProblem(
            f"PostgreSQL did not start: {processes.tail(layout.log, 5)}",
            f"read {layout.log}; `magnetar dev down` then `magnetar dev up`",
        )
    if fresh:
        _create_roles(layout, binaries)
    return time.monotonic() - started


def orphaned(layout: PostgresLayout) -> bool:
    """A cluster whose passwords are gone: under root it lives outside the checkout, so a
    fresh clone at the same path finds the previous clone's cluster but not its passwords,
    and no role could ever log in to it again."""
    return (layout.data / "PG_VERSION").exists() and not layout.secrets_file.exists()


def _discard(layout: PostgresLayout) -> None:
    print(
        f"removing the PostgreSQL cluster at {layout.root}: it was made for an earlier "
        "checkout at this path and its passwords went with it…",
        flush=True,
    )
    stop(layout)
    shutil.rmtree(layout.root)


def _init_cluster(layout: PostgresLayout, binaries: Path) -> None:
    private_folder(layout.root)
    pw = _passwords(layout)
    pwfile = write_private(layout.root / ".pwfile", pw["postgres"] + "\n")
    if os.geteuid() == 0:
        shutil.chown(layout.root, SERVICE_USER, SERVICE_USER)
        shutil.chown(pwfile, SERVICE_USER, SERVICE_USER)
    try:
        subprocess.run(
            _as_service_user(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(layout.data),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            capture_output=True,
            text=True,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise EnvironmentProblem(
            f"initdb failed: {exc.stderr.strip()[-300:]}",
            f"remove {layout.root} and run `magnetar dev up` again",
        ) from exc
    finally:
        pwfile.unlink(missing_ok=True)
    conf = layout.data / "postgresql.conf"
    conf.write_text(
        conf.read_text()
        + "\n# Magnetar local cluster: loopback only, sized for a 2-core machine.\n"
        f"listen_addresses = '127.0.0.1'\nport = {layout.port}\n"
        f"unix_socket_directories = '{layout.root}'\n"
        "shared_buffers = 512MB\nwork_mem = 16MB\nmax_connections = 200\n"
        "wal_level = replica\nmax_wal_size = 2GB\ncheckpoint_timeout = 15min\n"
        # Durability stays on: an acknowledged batch must survive an immediate stop.
        "synchronous_commit = on\nfsync = on\n"
        "log_min_duration_statement = 1000\n"
    )


def _create_roles(layout: PostgresLayout, binaries: Path) -> None:
    pw = _passwords(layout)
    sql = f"""
CREATE ROLE {OWNER_ROLE} LOGIN PASSWORD '{pw[OWNER_ROLE]}';
CREATE ROLE {APP_ROLE} LOGIN NOBYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{pw[APP_ROLE]}';
CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE};
\\connect {DATABASE}
ALTER SCHEMA public OWNER TO {OWNER_ROLE};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {APP_ROLE};
"""
    env = {**os.environ, "PGPASSWORD": pw["postgres"]}
    result = subprocess.run(
        [
            str(binaries / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(layout.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ],
        input=sql,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EnvironmentProblem(
            f"creating Magnetar roles failed: {result.stderr.strip()}",
            f"remove {layout.root} and run `magnetar dev up` again",
        )


def stop(layout: PostgresLayout) -> bool:
    if not running(layout):
        return False
    binaries = find_binaries()
    if binaries is None:
        return False
    subprocess.run(
        _as_service_user(
            [str(binaries / "pg_ctl"), "-D", str(layout.data), "-m", "fast", "-w", "stop"]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    return True
