"""A real Pulsar standalone (official binary distribution) with its functions worker.

The distribution comes from Maven Central as
``org.apache.pulsar:pulsar-server-distribution:<version>:tar.gz:bin`` through ``mvn
dependency:copy`` (so the Maven cache is reused), is unpacked once under the Magnetar home,
and runs with configuration written here for a 2-core machine:

* heap and direct memory far below the distribution's defaults (2 GiB heap + 4 GiB direct,
  ZGC with AlwaysPreTouch), G1 instead of ZGC;
* ZooKeeper metadata (``PULSAR_STANDALONE_USE_ZOOKEEPER=1``) with stream storage on, because
  Python function state silently does nothing in the default RocksDB metadata mode;
* the process runtime, whose Python instances run the ``python3`` found first on the broker
  JVM's PATH (the worker has no setting for it and overwrites PYTHONPATH): we put this
  interpreter's folder first, so functions import the installed ``magnetar`` packages;
* token authentication and authorization on, with a superuser token kept in a file that the
  broker client, the worker and the function instances read (never on a command line).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from magnetar import processes, pulsar_tokens
from magnetar.private_files import private_folder, write_private
from magnetar.problems import EnvironmentProblem, require_free_ports, require_program
from magnetar.stack_layout import PulsarLayout

SUPERUSER_ROLE = "magnetar-superuser"
BROKER_PORT = 6650
WEB_PORT = 8080
# Fixed by the standalone launcher: ZooKeeper, the bookie and the stream storage (state).
INTERNAL_PORTS = {"ZooKeeper": 2181, "BookKeeper": 3181, "stream storage": 4181}
STATE_STORAGE_URL = f"bk://127.0.0.1:{INTERNAL_PORTS['stream storage']}"


def fetch_distribution(layout: PulsarLayout) -> Path:
    """Download (through Maven) and unpack the distribution unless it is already there."""
    if (layout.dist / "bin" / "pulsar").exists():
        return layout.dist
    if not layout.tarball.exists():
        mvn = require_maven()
        layout.downloads.mkdir(parents=True, exist_ok=True)
        artifact = f"org.apache.pulsar:pulsar-server-distribution:{layout.version}:tar.gz:bin"
        print(f"fetching Apache Pulsar {layout.version} ({artifact}) through Maven…", flush=True)
        # MAGNETAR_MAVEN_SETTINGS points Maven at another settings.xml (a mirror, a proxy).
        settings_xml = os.environ.get("MAGNETAR_MAVEN_SETTINGS")
        result = subprocess.run(
            [
                mvn,
                *(["-s", settings_xml] if settings_xml else []),
                "-B",
                "-q",
                "-Dstyle.color=never",
                # Pinned plugin: reproducible, and no prefix lookup that hides network errors.
                "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
                f"-Dartifact={artifact}",
                f"-DoutputDirectory={layout.downloads}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not layout.tarball.exists():
            raise _maven_problem(result.stdout + result.stderr, artifact)
    print(f"unpacking {layout.tarball.name}…", flush=True)
    layout.dist.parent.mkdir(parents=True, exist_ok=True)
    partial = layout.dist.parent / f".unpacking-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    subprocess.run(["tar", "xzf", str(layout.tarball), "-C", str(partial)], check=True)
    (partial / layout.dist.name).rename(layout.dist)
    shutil.rmtree(partial, ignore_errors=True)
    return layout.dist


def _maven_problem(output: str, artifact: str) -> EnvironmentProblem:
    unreachable = re.search(
        r"(Could not transfer|UnknownHost|Connection refused|connect timed out|Network is unreachable"
        r"|Could not resolve host|offline mode)",
        output,
        re.IGNORECASE,
    )
    errors = [ln.removeprefix("[ERROR]").strip() for ln in output.splitlines() if "[ERROR]" in ln]
    last = next((ln for ln in errors if ln), output.strip()[-300:] or "no output")
    if unreachable:
        return EnvironmentProblem(
            f"Maven Central is unreachable, so {artifact} could not be fetched ({last[:200]})",
            "restore network access to Maven Central (or a mirror in ~/.m2/settings.xml) and run again",
        )
    return EnvironmentProblem(
        f"Maven could not fetch {artifact}: {last[:300]}",
        "check that the version exists and Maven works (`mvn -v`), then run again",
    )


def require_maven() -> str:
    return require_program(
        "mvn",
        "install Maven (`apt-get install -y maven`) so the Pulsar distribution can be fetched",
    )


def preflight(layout: PulsarLayout) -> None:
    """Tools a start needs, checked before anything is started or downloaded."""
    if processes.read_pid(layout.pid_file) is not None:
        return
    require_java()
    if not (layout.dist / "bin" / "pulsar").exists() and not layout.tarball.exists():
        require_maven()


def require_ports() -> None:
    require_free_ports(
        {"Pulsar broker": BROKER_PORT, "Pulsar web/admin": WEB_PORT, **INTERNAL_PORTS}
    )


def require_java() -> None:
    java = require_program(
        "java", "install a Java 17+ runtime (`apt-get install -y openjdk-17-jre-headless`)"
    )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise EnvironmentProblem(
            f"Java 17 or newer is required to run Pulsar, found: {out.splitlines()[0] if out else '?'}",
            "install OpenJDK 17 (`apt-get install -y openjdk-17-jre-headless`) and put it first on PATH",
        )


def _set_properties(text: str, values: dict[str, str]) -> str:
    """Set `key=value` lines of a Java properties file, appending keys it lacks."""
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)}=.*$", re.MULTILINE)
        line = f"{key}={value}"
        # A function replacement, so backslashes in values are not read as escapes.
        text, count = pattern.subn(lambda _m: line, text)  # noqa: B023
        if count == 0:
            text += f"\n{line}\n"
    return text


# The worker checks its instances this often; an instance that hears nothing from it for three
# periods stops itself. 2 s made instances stop themselves in a loop for a minute when the
# machine's load reached 20 (soak, 6 Dec); 5 s tolerates 15 s and restarts a killed one in ~7.
INSTANCE_LIVENESS_CHECK_MS = 5_000


def _set_yaml_scalars(text: str, values: dict[str, str]) -> str:
    """Set `key: value` lines (any indentation) of the worker's YAML, appending top-level keys."""
    for key, value in values.items():
        pattern = re.compile(rf"^(\s*){re.escape(key)}:.*$", re.MULTILINE)
        setting = f"{key}: {value}"
        text, count = pattern.subn(lambda m: f"{m.group(1)}{setting}", text, count=1)  # noqa: B023
        if count == 0:
            text += f"\n{key}: {value}\n"
    return text


def configure(layout: PulsarLayout) -> None:
    """Write the standalone and worker configuration and, once, the token key and superuser token."""
    for folder in (layout.run / "conf", layout.logs):
        folder.mkdir(parents=True, exist_ok=True)
    private_folder(layout.secret_key.parent)
    if not layout.secret_key.exists():
        key = pulsar_tokens.create_secret_key()
        write_private(layout.secret_key, key)
        write_private(layout.superuser_token, pulsar_tokens.sign_token(SUPERUSER_ROLE, key))
    token_param = f"file://{layout.superuser_token}"
    auth = {
        "authenticationEnabled": "true",
        "authenticationProviders": "org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
        "tokenSecretKey": f"file://{layout.secret_key}",
        "authorizationEnabled": "true",
        "superUserRoles": SUPERUSER_ROLE,
        "brokerClientAuthenticationPlugin": "org.apache.pulsar.client.impl.auth.AuthenticationToken",
        "brokerClientAuthenticationParameters": token_param,
    }
    standalone = _set_properties(
        (layout.dist / "conf" / "standalone.conf").read_text(),
        {
            **auth,
            "bindAddress": "127.0.0.1",
            "advertisedAddress": "127.0.0.1",
            "brokerServicePort": str(BROKER_PORT),
            "webServicePort": str(WEB_PORT),
            # Platform topics are created explicitly; an idle tenant's topics must not vanish.
            "brokerDeleteInactiveTopicsEnabled": "false",
            "allowAutoTopicCreation": "true",
            # Offboarding removes a tenant with everything in it in one call.
            "forceDeleteNamespaceAllowed": "true",
            "forceDeleteTenantAllowed": "true",
            "exposeTopicLevelMetricsInPrometheus": "true",
            "authenticateMetricsEndpoint": "false",
        },
    )
    layout.standalone_conf.write_text(standalone)
    worker = _set_yaml_scalars(
        (layout.dist / "conf" / "functions_worker.yml").read_text(),
        {
            "downloadDirectory": str(layout.run / "data" / "function-packages"),
            "logDirectory": str(layout.logs / "functions"),
            "pulsarServiceUrl": f"pulsar://127.0.0.1:{BROKER_PORT}",
            "pulsarWebServiceUrl": f"http://127.0.0.1:{WEB_PORT}",
            "stateStorageServiceUrl": STATE_STORAGE_URL,
            "authenticationEnabled": "true",
            "authorizationEnabled": "true",
            "superUserRoles": f"[{SUPERUSER_ROLE}]",
            "brokerClientAuthenticationPlugin": auth["brokerClientAuthenticationPlugin"],
            "brokerClientAuthenticationParameters": token_param,
            "brokerClientAuthenticationEnabled": "true",
            "authenticationProviders": f"[{auth['authenticationProviders']}]",
            "authenticateMetricsEndpoint": "false",
            # A killed instance is restarted within seconds instead of the default 30 s: the
            # pipeline of its tenant stops counting until then (docs/faults.md).
            "instanceLivenessCheckFreqMs": str(INSTANCE_LIVENESS_CHECK_MS),
        },
    )
    layout.worker_conf.write_text(worker)
    layout.client_conf.write_text(
        f"webServiceUrl=http://127.0.0.1:{WEB_PORT}/\n"
        f"brokerServiceUrl=pulsar://127.0.0.1:{BROKER_PORT}/\n"
        f"authPlugin={auth['brokerClientAuthenticationPlugin']}\n"
        f"authParams={token_param}\n"
    )


def service_env(layout: PulsarLayout) -> dict[str, str]:
    env = dict(os.environ)
    python_bin = str(Path(sys.executable).parent)
    env.update(
        {
            # Function instances run `python3` from this PATH: the interpreter with Magnetar.
            "PATH": f"{python_bin}{os.pathsep}{env.get('PATH', '')}",
            "PULSAR_MEM": "-Xms512m -Xmx1536m -XX:MaxDirectMemorySize=1g",
            "PULSAR_GC": "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+PerfDisableSharedMem",
            "PULSAR_LOG_DIR": str(layout.logs),
            "PULSAR_STANDALONE_USE_ZOOKEEPER": "1",
            "PULSAR_CLIENT_CONF": str(layout.client_conf),
        }
    )
    return env


def start(layout: PulsarLayout, *, timeout_s: float = 240.0) -> float:
    """Start the standalone unless running; wait until broker and functions worker answer."""
    started = time.monotonic()
    if processes.read_pid(layout.pid_file) is None:
        require_java()
        require_ports()
        configure(layout)
        data = layout.run / "data"
        processes.start_detached(
            [
                str(layout.dist / "bin" / "pulsar"),
                "standalone",
                "--config",
                str(layout.standalone_conf),
                "--functions-worker-conf",
                str(layout.worker_conf),
                "--bookkeeper-dir",
                str(data / "bookkeeper"),
                "--metadata-dir",
                str(data / "metadata"),
                "--advertised-address",
                "127.0.0.1",
            ],
            pid_file=layout.pid_file,
            log_file=layout.logs / "standalone.out",
            cwd=layout.run,
            env=service_env(layout),
        )
    wait_ready(layout, deadline=started + timeout_s)
    return time.monotonic() - started


def admin_headers(layout: PulsarLayout) -> dict[str, str]:
    return {"Authorization": f"Bearer {layout.superuser_token.read_text().strip()}"}


def health(layout: PulsarLayout) -> dict[str, str]:
    """One word per component: broker, functions worker."""
    report = {"broker": "down", "functions worker": "down"}
    if processes.read_pid(layout.pid_file) is None or not layout.superuser_token.exists():
        return report
    base = f"http://127.0.0.1:{WEB_PORT}/admin/v2"
    try:
        with httpx.Client(timeout=3.0, headers=admin_headers(layout)) as http:
            broker = http.get(f"{base}/brokers/health")
            report["broker"] = (
                "ready" if broker.status_code == 200 else f"starting ({broker.status_code})"
            )
            leader = http.get(f"{base}/worker/cluster/leader")
            functions_ns = http.get(f"{base}/namespaces/public/functions/retention")
            if leader.status_code == 200 and functions_ns.status_code == 200:
                report["functions worker"] = "ready"
            else:
                report["functions worker"] = f"starting ({leader.status_code})"
    except httpx.HTTPError:
        report["broker"] = "starting"
    return report


def wait_ready(layout: PulsarLayout, *, deadline: float) -> None:
    log = layout.logs / "standalone.out"
    while True:
        if processes.read_pid(layout.pid_file) is None:
            raise EnvironmentProblem(
                f"Pulsar standalone exited during start-up; last log lines:\n{processes.tail(log)}",
                f"read {log} and {layout.logs}/pulsar-standalone.log, then `magnetar dev up` again",
            )
        if all(state == "ready" for state in health(layout).values()):
            return
        if time.monotonic() > deadline:
            raise EnvironmentProblem(
                f"Pulsar standalone did not become ready in time; last log lines:\n{processes.tail(log)}",
                f"read {log}; `magnetar dev down` then `magnetar dev up` to retry",
            )
        time.sleep(1.0)


def stop(layout: PulsarLayout) -> bool:
    return processes.stop_group(layout.pid_file, grace_s=60.0)
