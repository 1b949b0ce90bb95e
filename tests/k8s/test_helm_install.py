"""The chart installed the way users install it, on a real control plane (kube-apiserver,
controller manager, scheduler, etcd; kwok as the kubelet, so no container runs).

What this proves beyond tests/helm: the API server admits every object of every scenario
(HPA, PDB, NetworkPolicy, Ingress and the ServiceMonitor included), Pod Security `restricted`
admits every pod, the hook Jobs run in their order and `--wait` sees the gateway ready;
`helm upgrade` rolls the gateway and reruns the hooks, `helm rollback` restores the previous
pod template, `helm uninstall` leaves exactly what docs/kubernetes.md says; a failing
migrations Job fails the install and stays for its logs. What it cannot prove: that the
containers start (docs/kubernetes.md, section 10).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from scripts import check_helm
from tests.k8s.conftest import HELM_WAIT, Cluster, eventually

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]

CHART = check_helm.CHART
RELEASE = "magnetar"
# The release name contains the chart's, so every object is named magnetar-<component>.
GATEWAY = "magnetar-gateway"
HOOK_JOBS = {"magnetar-migrations", "magnetar-functions-deploy"}
SCENARIOS = check_helm.scenarios()
SCENARIO_IDS = [check_helm.scenario_name(path) for path in SCENARIOS]
MINIMAL = check_helm.SCENARIOS_DIR / "minimal-values.yaml"
PRODUCTION = check_helm.SCENARIOS_DIR / "production-values.yaml"

# Where each kind the chart renders is listed, namespaced.
KIND_PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
    "ServiceMonitor": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors",
}

# A stand-in for the Prometheus Operator's CRD: the kind and version the chart renders, its
# fields unchecked here (tests/helm checks them against the CRD's schema). A cluster that
# scrapes with the operator has the real one.
SERVICE_MONITOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "listKind": "ServiceMonitorList",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


# --- helpers ------------------------------------------------------------------------------


def rendered(values_file: Path, *set_values: str) -> list[dict[str, Any]]:
    return check_helm.documents(
        check_helm.helm_template([values_file], set_values=set_values, kube_version="1.34.3")
    )


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def listed(cluster: Cluster, kind: str, namespace: str, selector: str = "") -> list[Any]:
    path = KIND_PATHS[kind].format(ns=namespace)
    if selector:
        path += f"?labelSelector={selector}"
    body = cluster.api.get(path)
    if body is None:  # the kind is not served (no CRD)
        return []
    items = body["items"]
    assert isinstance(items, list)
    return items


def names(cluster: Cluster, kind: str, namespace: str, selector: str = "") -> set[str]:
    return {item["metadata"]["name"] for item in listed(cluster, kind, namespace, selector)}


def release_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    answer = cluster.helm("status", RELEASE, "--namespace", namespace, "--output", "json")
    status: dict[str, Any] = json.loads(answer.stdout)
    return status


def hook_runs(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Last run of each hook Job of the release revision: name -> {phase, started_at}."""
    return {
        hook["name"]: hook.get("last_run") or {}
        for hook in status.get("hooks", [])
        if hook["kind"] == "Job"
    }


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def status_of(found: dict[str, Any] | None) -> dict[str, Any]:
    """An object's status; {} while it has none: the API server may answer `null` for a
    status (and for its conditions) just after the object was created."""
    return (found or {}).get("status") or {}


def ensure_service_monitor_crd(cluster: Cluster) -> None:
    name = SERVICE_MONITOR_CRD["metadata"]["name"]
    if cluster.api.get(f"{CRD_PATH}/{name}") is None:
        cluster.api.create(CRD_PATH, SERVICE_MONITOR_CRD)

    def established() -> bool:
        conditions = status_of(cluster.api.get(f"{CRD_PATH}/{name}")).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually("the ServiceMonitor CRD is established", established)


def remove_service_monitor_crd(cluster: Cluster) -> None:
    name = SERVICE_MONITOR_CRD["metadata"]["name"]
    cluster.api.call("DELETE", f"{CRD_PATH}/{name}")
    eventually(
        "the ServiceMonitor CRD is gone",
        lambda: (
            cluster.api.get(f"{CRD_PATH}/{name}") is None
            and cluster.api.get("/apis/monitoring.coreos.com/v1") is None
        ),
    )


def provide_prerequisites(cluster: Cluster, namespace: str, docs: list[dict[str, Any]]) -> None:
    """What an operator creates before installing a scenario: the Secrets it names but does
    not make (with the keys it reads), its PriorityClass, the ServiceMonitor CRD."""
    made = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Secret"}
    wanted: dict[str, set[str]] = {}
    priority_classes: set[str] = set()
    for doc in docs:
        if doc["kind"] == "Ingress":
            for tls in doc["spec"].get("tls", []):
                wanted.setdefault(tls["secretName"], {"tls.crt", "tls.key"})
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        if "priorityClassName" in pod:
            priority_classes.add(pod["priorityClassName"])
        for pull in pod.get("imagePullSecrets", []):
            wanted.setdefault(pull["name"], set()).add(".dockerconfigjson")
        for volume in pod.get("volumes", []):
            secret = volume.get("secret")
            if secret:
                keys = {item["key"] for item in secret.get("items", [])}
                wanted.setdefault(secret["secretName"], set()).update(keys)
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    wanted.setdefault(ref["name"], set()).add(ref["key"])
    for name, keys in sorted(wanted.items()):
        if name in made:
            continue
        cluster.api.create(
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {key: "test-only-not-a-secret" for key in keys},
            },
        )
    for name in sorted(priority_classes):
        path = "/apis/scheduling.k8s.io/v1/priorityclasses"
        if cluster.api.get(f"{path}/{name}") is None:
            cluster.api.create(
                path,
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": {"name": name},
                    "value": 100000,
                },
            )
    if any(doc["kind"] == "ServiceMonitor" for doc in docs):
        ensure_service_monitor_crd(cluster)


def install(cluster: Cluster, namespace: str, values_file: Path, *set_values: str) -> str:
    """helm install with hooks and --wait; returns helm's stderr (Pod Security warnings)."""
    provide_prerequisites(cluster, namespace, rendered(values_file, *set_values))
    args: list[str | Path] = ["install", RELEASE, CHART, "--namespace", namespace]
    args += ["--values", values_file, "--wait", "--timeout", HELM_WAIT]
    for assignment in set_values:
        args += ["--set", assignment]
    return cluster.helm(*args).stderr


def gateway_rollout(cluster: Cluster, namespace: str) -> tuple[str, dict[str, int]]:
    """The gateway's config checksum and the replicas of each of its ReplicaSets."""
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{GATEWAY}")
    assert deployment is not None
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    # The gateway's own: the admin plane's Deployment has ReplicaSets in the namespace too.
    sets = {
        rs["metadata"]["labels"]["pod-template-hash"]: rs["status"].get("replicas", 0)
        for rs in listed(cluster, "ReplicaSet", namespace)
        if any(o.get("name") == GATEWAY for o in rs["metadata"].get("ownerReferences", []))
    }
    return checksum, sets


def rolled_out(cluster: Cluster, namespace: str) -> bool:
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{GATEWAY}")
    assert deployment is not None
    status = deployment["status"]
    wanted = deployment["spec"]["replicas"]
    return bool(
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == wanted
        and status.get("readyReplicas") == wanted
        and status.get("replicas") == wanted
    )


# --- the scenarios ------------------------------------------------------------------------


def test_a_service_monitor_without_the_operator_crd_fails_the_install(
    cluster: Cluster, namespace: str
) -> None:
    """The chart renders the ServiceMonitor whenever it is enabled, CRD or not (a scrape
    config that silently vanished would be worse): the install says which CRD is missing."""
    remove_service_monitor_crd(cluster)
    result = cluster.helm(
        "install",
        RELEASE,
        CHART,
        "--namespace",
        namespace,
        "--values",
        PRODUCTION,
        "--wait",
        "--timeout",
        HELM_WAIT,
        check=False,
    )
    assert result.returncode != 0
    assert "ServiceMonitor" in result.stderr and "monitoring.coreos.com/v1" in result.stderr, (
        result.stderr
    )


@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_every_scenario_installs_under_restricted_pod_security(
    cluster: Cluster, namespace: str, values_file: Path
) -> None:
    docs = rendered(values_file)
    warnings = install(cluster, namespace, values_file)

    # Pod Security `restricted` is enforced (and warned about) in the namespace: the pods
    # exist, so nothing was refused, and no workload drew a warning either.
    assert "PodSecurity" not in warnings, warnings
    status = release_status(cluster, namespace)
    assert status["info"]["status"] == "deployed"
    runs = hook_runs(status)
    assert set(runs) == HOOK_JOBS
    assert {name: run.get("phase") for name, run in runs.items()} == dict.fromkeys(
        HOOK_JOBS, "Succeeded"
    )
    # pre-install migrations finished before post-install functions-deploy started.
    assert timestamp(runs["magnetar-migrations"]["completed_at"]) <= timestamp(
        runs["magnetar-functions-deploy"]["started_at"]
    )
    # Eventually: with autoscaling the HPA raises the replicas to its minimum after `--wait`.
    eventually("the gateway is rolled out", lambda: rolled_out(cluster, namespace))

    # Every object the chart renders outside the hooks was admitted and is there.
    for doc in docs:
        if is_hook(doc):
            continue
        kind, name = doc["kind"], doc["metadata"]["name"]
        assert name in names(cluster, kind, namespace), f"{kind}/{name} is missing"


def test_production_objects_are_admitted_server_side(cluster: Cluster, namespace: str) -> None:
    """HPA, PDB, NetworkPolicy, Ingress (and the ServiceMonitor), as the API server stored
    them: defaulted and validated by it, not only by the schemas."""
    install(cluster, namespace, PRODUCTION)
    api, ns = cluster.api, namespace
    hpa = api.get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{GATEWAY}")
    assert hpa is not None
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["scaleTargetRef"]["name"] == GATEWAY
    # The chart leaves the replicas to the HPA, whose controller brings them to its minimum.
    eventually(
        "the HPA scales the gateway to minReplicas",
        lambda: (
            status_of(api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{GATEWAY}")).get(
                "readyReplicas"
            )
            == 3
        ),
    )
    pdb = api.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{GATEWAY}")
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    # The disruption controller evaluated it against the running gateway pods.
    eventually(
        "the PDB observes the gateway pods",
        lambda: (
            status_of(
                api.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{GATEWAY}")
            ).get("expectedPods", 0)
            >= 1
        ),
    )
    policy = api.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/magnetar")
    assert policy is not None and policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress = api.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/{GATEWAY}")
    assert ingress is not None
    assert ingress["spec"]["tls"][0]["hosts"] == ["magnetar.example.com"]
    monitor = api.get(f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/{GATEWAY}")
    assert monitor is not None


# --- lifecycle ----------------------------------------------------------------------------


def test_upgrade_rolls_the_gateway_and_reruns_hooks_rollback_and_uninstall(
    cluster: Cluster, namespace: str
) -> None:
    install(cluster, namespace, MINIMAL)
    # The ReplicaSet that serves once the install has settled (seen in a CI dry run: right
    # after `--wait` a second, empty ReplicaSet can be listed too).
    eventually("the installed gateway is rolled out", lambda: rolled_out(cluster, namespace))
    first_checksum, first_sets = gateway_rollout(cluster, namespace)
    (first_hash,) = [h for h, replicas in first_sets.items() if replicas > 0]
    first_runs = hook_runs(release_status(cluster, namespace))

    # A changed setting: new ConfigMap content, so a new pod template.
    cluster.helm(
        "upgrade",
        RELEASE,
        CHART,
        "--namespace",
        namespace,
        "--values",
        MINIMAL,
        "--set",
        "extraConfig.MAGNETAR_LOG_LEVEL=DEBUG",
        "--wait",
        "--timeout",
        HELM_WAIT,
    )
    status = release_status(cluster, namespace)
    assert (status["version"], status["info"]["status"]) == (2, "deployed")
    runs = hook_runs(status)
    for job in HOOK_JOBS:
        assert runs[job]["phase"] == "Succeeded"
        assert timestamp(runs[job]["started_at"]) > timestamp(first_runs[job]["completed_at"]), (
            f"{job} did not run again on upgrade"
        )
    second_checksum, second_sets = gateway_rollout(cluster, namespace)
    assert second_checksum != first_checksum
    eventually("the upgraded gateway is rolled out", lambda: rolled_out(cluster, namespace))
    _, second_sets = gateway_rollout(cluster, namespace)

    def both(sets: dict[str, int]) -> dict[str, int]:
        """The two ReplicaSets of the first and the upgraded template (an extra, empty one
        is ignored)."""
        return {h: sets.get(h, 0) for h in (first_hash, second_hash)}

    (second_hash,) = [h for h, replicas in second_sets.items() if h != first_hash and replicas]
    # The old ReplicaSet's pods are gone once kwok has played their deletion.
    eventually(
        "the first ReplicaSet is scaled to 0, the new one serves",
        lambda: both(gateway_rollout(cluster, namespace)[1]) == {first_hash: 0, second_hash: 1},
    )

    # Rollback: the first pod template again, by its ReplicaSet.
    cluster.helm(
        "rollback", RELEASE, "1", "--namespace", namespace, "--wait", "--timeout", HELM_WAIT
    )
    status = release_status(cluster, namespace)
    assert (status["version"], status["info"]["status"]) == (3, "deployed")
    eventually("the rolled-back gateway is rolled out", lambda: rolled_out(cluster, namespace))
    checksum, _ = gateway_rollout(cluster, namespace)
    assert checksum == first_checksum
    eventually(
        "the upgraded ReplicaSet is scaled to 0 again",
        lambda: both(gateway_rollout(cluster, namespace)[1]) == {first_hash: 1, second_hash: 0},
    )

    # Uninstall leaves exactly what docs/kubernetes.md section 9 says: the hook resources.
    cluster.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", HELM_WAIT)
    selector = f"app.kubernetes.io/instance={RELEASE}"

    def left() -> set[str]:
        return {
            f"{kind}/{name}"
            for kind in KIND_PATHS
            for name in names(cluster, kind, namespace, selector)
        }

    documented = {"ServiceAccount/magnetar", "ConfigMap/magnetar", "Secret/magnetar"}
    eventually("only the hook resources are left", lambda: left() == documented)
    # The documented clean-up removes them.
    for kind in ("ServiceAccount", "ConfigMap", "Secret"):
        path = KIND_PATHS[kind].format(ns=namespace) + f"?labelSelector={selector}"
        code, body = cluster.api.call("DELETE", path)
        assert code == 200, body
    eventually("nothing of the release is left", lambda: left() == set())


def test_a_failing_migrations_job_fails_the_install_and_stays_for_its_logs(
    cluster: Cluster, namespace: str
) -> None:
    # tests/k8s/stages/job-pod-fail.yaml makes kwok fail a pod with this annotation.
    result = cluster.helm(
        "install",
        RELEASE,
        CHART,
        "--namespace",
        namespace,
        "--values",
        MINIMAL,
        "--set",
        "migrations.backoffLimit=0",
        "--set-string",
        "migrations.podAnnotations.k8s-test\\.magnetar\\.dev/fail=true",
        "--wait",
        "--timeout",
        HELM_WAIT,
        check=False,
    )
    assert result.returncode != 0
    message = result.stderr
    assert "pre-install" in message and "magnetar-migrations" in message, message
    assert "BackoffLimitExceeded" in message, message
    # The chart's helm.sh/hook-output-log-policy: Helm prints the failed pod's log with the
    # error (kwok serves tests/k8s/stages/container.log as every container's log).
    assert "the container log kwok serves" in message, message
    # Nothing of the release started on the old (unmigrated) schema.
    assert names(cluster, "Deployment", namespace) == set()
    # The failed Job and its pod are kept (hook-delete-policy keeps failures), so
    # `kubectl logs job/magnetar-migrations` can show why.
    job = cluster.api.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/magnetar-migrations")
    assert job is not None
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"]["conditions"])
    pods = listed(cluster, "Pod", namespace, "batch.kubernetes.io/job-name=magnetar-migrations")
    assert [pod["status"]["phase"] for pod in pods] == ["Failed"]
