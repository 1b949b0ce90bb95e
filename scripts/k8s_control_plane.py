"""A real Kubernetes control plane on this machine, without containers, for `make k8s-test`.

    .venv/bin/python scripts/k8s_control_plane.py up      # start; prints the kubeconfig path
    .venv/bin/python scripts/k8s_control_plane.py status  # exit 0 when the API server answers
    .venv/bin/python scripts/k8s_control_plane.py down    # stop what `up` started

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (a fake kubelet: one
node, pods that reach Running, Job pods that complete, no container ever runs) are started as
processes of this user, all of them on the loopback interface only: etcd's client and peer
ports and the API server's port are free loopback ports chosen at start, the controller
manager and scheduler serve no port at all. Clients authenticate with tokens from a file
(generated at every start, mode 0600) and RBAC is on; the admin token is in the kubeconfig.
The binaries come from ``scripts/install_k8s_tools.sh --control-plane``.

Guarantees: every wait is bounded and a failure names the component and its log file;
``down`` stops only the processes whose ids ``up`` recorded (and whose command line still
names the binary), waits for them, and is idempotent. Each ``up`` starts from an empty etcd.
Why this shape, and what it does not prove (containers never run): docs/kubernetes.md, 10.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOOLS_DIR = Path(os.environ.get("MAGNETAR_TOOLS_DIR", REPO / ".magnetar" / "tools"))
BIN = TOOLS_DIR / "bin"
KWOK_STAGES = TOOLS_DIR / "share" / "kwok-stages"
STATE_DIR = Path(os.environ.get("MAGNETAR_K8S_DIR", REPO / ".magnetar" / "k8s"))
KUBECONFIG = STATE_DIR / "kubeconfig"

LOOPBACK = "127.0.0.1"
NODE_NAME = "kwok-node-0"
# Enough for the production scenario's three 1-CPU gateways, a surge pod and the hook Jobs.
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110"}
SERVICE_CIDR = "10.96.0.0/16"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.5

# Start order; `down` stops in the reverse order.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(Exception):
    """The control plane could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """Where one control plane keeps its files, and the ports it was given."""

    root: Path
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    kwok_port: int = 0

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.csv"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    def kubeconfig(self, user: str) -> Path:
        return self.root / ("kubeconfig" if user == "admin" else f"{user}.kubeconfig")

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


# Who each component authenticates as: (user, uid, groups). The controller manager and the
# scheduler are the users the API server's bootstrap RBAC policy grants their roles to; the
# admin (Helm, the tests) and kwok (it writes node and pod status) are cluster admins.
IDENTITIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "admin": ("magnetar-admin", "uid-admin", ("system:masters",)),
    "kube-controller-manager": ("system:kube-controller-manager", "uid-kcm", ()),
    "kube-scheduler": ("system:kube-scheduler", "uid-scheduler", ()),
    "kwok": ("kwok", "uid-kwok", ("system:masters",)),
}


# --- pure: what to write and what to run ---------------------------------------------------


def tokens_csv(tokens: dict[str, str]) -> str:
    """The API server's --token-auth-file: token,user,uid,"group1,group2"."""
    lines = []
    for name, token in sorted(tokens.items()):
        user, uid, groups = IDENTITIES[name]
        lines.append(f'{token},{user},{uid},"{",".join(groups)}"')
    return "\n".join(lines) + "\n"


def kubeconfig_yaml(server: str, ca_pem: bytes, user: str, token: str) -> str:
    """A kubeconfig (JSON is valid YAML) for one user of the control plane."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "magnetar-k8s-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "magnetar-k8s-test", "context": {"cluster": "magnetar-k8s-test", "user": user}}
        ],
        "current-context": "magnetar-k8s-test",
    }
    return json.dumps(config, indent=2) + "\n"


def commands(layout: Layout, etcd: str) -> dict[str, list[str]]:
    """The command line of every component, all bound to loopback."""
    etcd_client = f"http://{LOOPBACK}:{layout.etcd_client_port}"
    etcd_peer = f"http://{LOOPBACK}:{layout.etcd_peer_port}"
    pki = layout.pki
    stages = sorted(KWOK_STAGES.glob("*.yaml"))
    return {
        "etcd": [
            etcd,
            "--name=magnetar-k8s-test",
            f"--data-dir={layout.root / 'etcd'}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=magnetar-k8s-test={etcd_peer}",
            "--listen-metrics-urls=",
            # A throwaway store: no fsync waits on a shared disk.
            "--unsafe-no-fsync",
        ],
        "kube-apiserver": [
            str(BIN / "kube-apiserver"),
            f"--etcd-servers={etcd_client}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={layout.apiserver_port}",
            # Generates a self-signed serving certificate for the loopback address there.
            f"--cert-dir={pki}",
            f"--token-auth-file={layout.tokens}",
            "--anonymous-auth=false",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Endpoints may not hold a loopback address; nothing here dials the Service.
            "--endpoint-reconciler-type=none",
            # Debian's etcd 3.4.23 predates the progress notifications the watch cache needs to
            # answer streaming lists (client-go's default): clients then fall back to a LIST
            # only after each watch fails, so kwok saw new pods tens of seconds late.
            # Without the cache, watches go to etcd directly.
            "--watch-cache=false",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            str(BIN / "kube-controller-manager"),
            f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
            "--secure-port=0",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'apiserver.crt'}",
            "--use-service-account-credentials=true",
            "--profiling=false",
        ],
        "kube-scheduler": [
            str(BIN / "kube-scheduler"),
            f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
            "--secure-port=0",
            "--leader-elect=false",
            "--profiling=false",
        ],
        "kwok": [
            str(BIN / "kwok"),
            f"--kubeconfig={layout.kubeconfig('kwok')}",
            "--manage-all-nodes=true",
            # Renews the node's Lease (the heartbeat-with-lease stage posts status only every
            # ~10 minutes); without it the node lifecycle controller marks the node, and so
            # every pod, not ready after its 40 s grace period.
            "--node-lease-duration-seconds=40",
            # The node is kwok itself on loopback: the API server asks it for container logs
            # (what Helm prints of a failed hook), served from the file named in
            # logs.yaml. Pod IPs are kwok's fake ones: nothing routes or dials them.
            f"--node-ip={LOOPBACK}",
            f"--node-port={layout.kwok_port}",
            f"--server-address={LOOPBACK}:{layout.kwok_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--config={layout.root / 'logs.yaml'}",
            *(f"--config={stage}" for stage in stages),
            *(f"--config={stage}" for stage in extra_stages()),
        ],
    }


def cluster_logs(logs_file: Path) -> dict[str, object]:
    """kwok's configuration of what every container "logged": the lines of one CRI log file
    (tests/k8s/stages/container.log), since no container runs to write any."""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "magnetar-k8s-test"},
        "spec": {"logs": [{"logsFile": str(logs_file), "follow": False}]},
    }


def extra_stages() -> list[Path]:
    """Project stages (tests/k8s/stages): e.g. failing a Job's pod on request."""
    return sorted((REPO / "tests" / "k8s" / "stages").glob("*.yaml"))


def node_manifest() -> dict[str, object]:
    """The one fake node kwok manages (it sets the node's status and heartbeat)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY},
    }


# --- I/O ----------------------------------------------------------------------------------


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def find_etcd() -> str:
    etcd = shutil.which("etcd")
    if etcd is None:
        raise ControlPlaneError(
            "etcd is not on PATH: run scripts/install_k8s_tools.sh --control-plane "
            "(as root it installs Debian's etcd-server)"
        )
    return etcd


def check_binaries() -> None:
    missing = [name for name in COMPONENTS[1:] if not (BIN / name).is_file()]
    if missing or not any(KWOK_STAGES.glob("*.yaml")):
        raise ControlPlaneError(
            f"missing in {BIN}: {', '.join(missing) or 'kwok stages'}; run "
            "scripts/install_k8s_tools.sh --control-plane (builds them once, minutes)"
        )
    if shutil.which("openssl") is None:
        raise ControlPlaneError("openssl is needed for the service-account key; install it")


def write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def service_account_keys(pki: Path) -> None:
    subprocess.run(
        ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
        check=True,
        capture_output=True,
    )
    (pki / "sa.key").chmod(0o600)


def spawn(layout: Layout, component: str, command: Sequence[str]) -> None:
    log = layout.log(component).open("ab")
    # Its own session: `make` or pytest ending does not take the control plane with it, and
    # `down` stops exactly this process.
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (layout.pids / component).write_text(str(process.pid))


def running(layout: Layout, component: str) -> int | None:
    """The recorded pid of a component while it is still that component's process."""
    pid_file = layout.pids / component
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    try:
        # The executable, not the command line: that is empty for a moment after exec.
        executable = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    if Path(executable).name != component:
        return None  # the pid was reused by something else: never signal it
    return None if status == "Z" else pid


def wait_until(what: str, check: object, timeout: float, layout: Layout, component: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if running(layout, component) is None:
            raise ControlPlaneError(
                f"{component} exited while waiting for {what}; see {layout.log(component)}:\n"
                + tail(layout.log(component))
            )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ControlPlaneError) as error:
            last_error = str(error)
        time.sleep(POLL_S)
    raise ControlPlaneError(
        f"timed out after {timeout:.0f}s waiting for {what} ({last_error or 'no answer'}); "
        f"see {layout.log(component)}:\n" + tail(layout.log(component))
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Api:
    """A minimal client of the API server (JSON over HTTPS, bearer token): enough for the
    control plane's own setup and for tests/k8s to read what Helm made."""

    def __init__(self, server: str, token: str, ca_file: Path) -> None:
        self.server = server
        self.token = token
        self.context = ssl.create_default_context(cafile=str(ca_file))

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Api:
        config = json.loads(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        ca_file = path.parent / "pki" / "apiserver.crt"
        if not ca_file.is_file():
            ca_file = path.parent / "ca.crt"
            ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return cls(cluster["server"], config["users"][0]["user"]["token"], ca_file)

    def call(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, decoded JSON body); never raises for an HTTP error status."""
        request = urllib.request.Request(
            self.server + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            decoded = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            decoded = {"text": raw.decode(errors="replace")}
        return status, decoded if isinstance(decoded, dict) else {"value": decoded}

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at path, or None when it does not exist; other errors raise."""
        status, body = self.call("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ControlPlaneError(f"GET {path}: {status} {body}")
        return body

    def create(self, path: str, body: object) -> dict[str, Any]:
        status, answer = self.call("POST", path, body)
        if status not in (200, 201):
            raise ControlPlaneError(f"POST {path}: {status} {answer}")
        return answer


def up() -> Path:
    """Start a fresh control plane; returns the admin kubeconfig. Stops a previous one first."""
    check_binaries()
    etcd = find_etcd()
    down(quiet=True)
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
    layout = Layout(
        root=STATE_DIR,
        etcd_client_port=free_loopback_port(),
        etcd_peer_port=free_loopback_port(),
        apiserver_port=free_loopback_port(),
        kwok_port=free_loopback_port(),
    )
    for directory in (layout.root, layout.pki, layout.logs, layout.pids):
        directory.mkdir(parents=True, exist_ok=True)
    layout.root.chmod(0o700)
    (layout.root / "ports.json").write_text(
        json.dumps(
            {
                "etcd_client": layout.etcd_client_port,
                "etcd_peer": layout.etcd_peer_port,
                "apiserver": layout.apiserver_port,
                "kwok": layout.kwok_port,
            }
        )
    )
    tokens = {name: secrets.token_hex(24) for name in IDENTITIES}
    write_private(layout.tokens, tokens_csv(tokens))
    service_account_keys(layout.pki)
    (layout.root / "logs.yaml").write_text(
        json.dumps(cluster_logs(REPO / "tests" / "k8s" / "stages" / "container.log"))
    )
    argv = commands(layout, etcd)
    try:
        spawn(layout, "etcd", argv["etcd"])
        etcd_health = f"http://{LOOPBACK}:{layout.etcd_client_port}/health"
        wait_until(
            "etcd health",
            lambda: urllib.request.urlopen(etcd_health, timeout=2).status == 200,
            START_TIMEOUT_S,
            layout,
            "etcd",
        )
        spawn(layout, "kube-apiserver", argv["kube-apiserver"])
        wait_until(
            "the API server's serving certificate",
            (layout.pki / "apiserver.crt").is_file,
            START_TIMEOUT_S,
            layout,
            "kube-apiserver",
        )
        api = Api(layout.server, tokens["admin"], layout.pki / "apiserver.crt")
        wait_until(
            "the API server's /readyz",
            lambda: api.call("GET", "/readyz")[0] == 200,
            START_TIMEOUT_S,
            layout,
            "kube-apiserver",
        )
        ca_pem = (layout.pki / "apiserver.crt").read_bytes()
        for name, token in tokens.items():
            write_private(
                layout.kubeconfig(name),
                kubeconfig_yaml(layout.server, ca_pem, IDENTITIES[name][0], token),
            )
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            spawn(layout, component, argv[component])
        api.create("/api/v1/nodes", node_manifest())
        wait_until(
            f"node {NODE_NAME} Ready (kwok)",
            lambda: node_ready(api),
            START_TIMEOUT_S,
            layout,
            "kwok",
        )
        wait_until(
            "the default ServiceAccount (controller manager)",
            lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            START_TIMEOUT_S,
            layout,
            "kube-controller-manager",
        )
        for component in COMPONENTS:
            if running(layout, component) is None:
                raise ControlPlaneError(
                    f"{component} is not running; see {layout.log(component)}:\n"
                    + tail(layout.log(component))
                )
    except BaseException:
        down(quiet=True)
        raise
    return layout.kubeconfig("admin")


def node_ready(api: Api) -> bool:
    node = api.get(f"/api/v1/nodes/{NODE_NAME}") or {}
    status = node.get("status")
    conditions = (status.get("conditions") or []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def down(quiet: bool = False) -> None:
    """Stop every component `up` recorded, newest first; bounded, idempotent."""
    pids_dir = STATE_DIR / "pids"
    layout = Layout(root=STATE_DIR, etcd_client_port=0, etcd_peer_port=0, apiserver_port=0)
    for component in reversed(COMPONENTS):
        pid = running(layout, component)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while running(layout, component) is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            if running(layout, component) is not None:
                os.kill(pid, signal.SIGKILL)
            reap(pid)
            if not quiet:
                print(f"stopped {component} (pid {pid})", file=sys.stderr)
        (pids_dir / component).unlink(missing_ok=True)


def reap(pid: int) -> None:
    """Collect the exit status when the process is our child (same Python process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_up() -> bool:
    """True when the kubeconfig exists and the API server behind it answers /readyz."""
    if not KUBECONFIG.is_file():
        return False
    try:
        return Api.from_kubeconfig(KUBECONFIG).call("GET", "/readyz")[0] == 200
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            started = time.monotonic()
            kubeconfig = up()
            print(
                f"control plane up in {time.monotonic() - started:.0f}s; logs in "
                f"{STATE_DIR / 'logs'}",
                file=sys.stderr,
            )
            print(kubeconfig)
        elif args.action == "down":
            down()
        else:
            if not is_up():
                print("control plane is not running (start it: make k8s-test)", file=sys.stderr)
                return 1
            print(KUBECONFIG)
    except ControlPlaneError as error:
        print(f"k8s_control_plane: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
