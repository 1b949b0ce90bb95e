"""Fixtures of the control-plane tests: the running control plane, Helm pointed at it, and a
namespace per test that enforces Pod Security `restricted`.

These tests need the control plane that `make k8s-test` starts (scripts/k8s_control_plane.py);
they are marked `k8s`, which the default pytest run deselects. Run without it, they fail with
the command that starts it: never a skip.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import check_helm, k8s_control_plane
from scripts.k8s_control_plane import Api

# Every helm call is bounded; --wait/--timeout inside it are shorter still.
HELM_TIMEOUT_S = 240
HELM_WAIT = "150s"


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Cluster:
    """The control plane: its API and a Helm that talks to it."""

    kubeconfig: Path
    api: Api
    helm_home: Path

    def helm(self, *args: str | Path, check: bool = True) -> HelmResult:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }
        result = subprocess.run(
            [str(check_helm.HELM), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=HELM_TIMEOUT_S,
            check=False,
        )
        outcome = HelmResult(result.returncode, result.stdout, result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(map(str, args))} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return outcome


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    if not k8s_control_plane.is_up():
        pytest.fail(
            f"no Kubernetes control plane answers at {k8s_control_plane.KUBECONFIG}: run "
            "`make k8s-test` (it starts one, runs these tests and stops it)",
            pytrace=False,
        )
    kubeconfig = k8s_control_plane.KUBECONFIG
    return Cluster(kubeconfig, Api.from_kubeconfig(kubeconfig), tmp_path_factory.mktemp("helm"))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted` (latest), deleted afterwards."""
    name = f"magnetar-{uuid.uuid4().hex[:8]}"
    labels = {
        f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
    }
    labels["pod-security.kubernetes.io/enforce-version"] = "latest"
    cluster.api.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
    )
    yield name
    cluster.api.call("DELETE", f"/api/v1/namespaces/{name}")


def eventually(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll check until it holds; fail naming what did not happen within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")
