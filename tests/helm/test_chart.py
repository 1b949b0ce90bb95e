"""The Kubernetes deliverables: the Helm chart and the Dockerfile.

Chart checks drive real tools (helm lint and template for every ci/ scenario, strict
Kubernetes schema validation, the checkov security lint); the first run on a machine installs
them through scripts/install_k8s_tools.sh (helm is built with `go install`: minutes), later
runs reuse them. The Dockerfile cannot be built here (no Docker engine), so it is parsed and
its invariants checked, and the reproducibility it relies on is proven by building the wheel
twice the way its build stage does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from magnetar.settings import PULSAR_VERSION, Settings
from scripts import check_helm

REPO = check_helm.REPO
CHART = check_helm.CHART
SCENARIOS = check_helm.scenarios()
SCENARIO_IDS = [check_helm.scenario_name(path) for path in SCENARIOS]

# The tools install once per machine; their first build takes minutes on 2 cores.
tool_timeout = pytest.mark.timeout(900)


def scenario(name: str) -> Path:
    return check_helm.SCENARIOS_DIR / f"{name}-values.yaml"


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> None:
    check_helm.ensure_tools()


@pytest.fixture(scope="module")
def rendered(tools: None) -> dict[str, str]:
    """Each scenario rendered for the newest Kubernetes version checked."""
    return {check_helm.scenario_name(path): check_helm.helm_template([path]) for path in SCENARIOS}


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    matching = [
        doc
        for doc in kinds(docs, kind)
        if component is None
        or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(matching) == 1, f"expected one {kind} {component or ''}, got {len(matching)}"
    return matching[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
        for doc in docs
        if doc["kind"] in ("Deployment", "Job")
    ]


# --- the scenarios ------------------------------------------------------------------------


def test_the_three_scenarios_exist() -> None:
    assert set(SCENARIO_IDS) >= {"minimal", "production", "external-secrets"}


@tool_timeout
@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_helm_lint_passes_strictly(tools: None, values_file: Path) -> None:
    output = check_helm.helm_lint(values_file)
    assert "0 chart(s) failed" in output


@tool_timeout
@pytest.mark.parametrize("kube_version", check_helm.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values_file", SCENARIOS, ids=SCENARIO_IDS)
def test_rendered_manifests_validate_against_kubernetes_schemas(
    tools: None, values_file: Path, kube_version: str, tmp_path: Path
) -> None:
    output = check_helm.helm_template([values_file], kube_version=kube_version)
    check_helm.validate_schemas(output, kube_version, tmp_path)


@tool_timeout
def test_schema_validation_rejects_an_invalid_manifest(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    """The validator is strict: an unknown field or a wrong type fails it."""
    broken = rendered["minimal"].replace("  replicas: 1\n", "  replicaz: 1\n", 1)
    assert broken != rendered["minimal"]
    with pytest.raises(check_helm.CheckFailed, match="replicaz"):
        check_helm.validate_schemas(broken, check_helm.KUBERNETES_VERSIONS[-1], tmp_path)
    # CRD kinds are checked too, against the part of their schema the chart uses.
    broken = rendered["production"].replace("interval: 30s", "interval: often", 1)
    assert broken != rendered["production"]
    with pytest.raises(check_helm.CheckFailed, match="ServiceMonitor"):
        check_helm.validate_schemas(broken, check_helm.KUBERNETES_VERSIONS[-1], tmp_path)


@tool_timeout
def test_security_lint_has_no_unjustified_finding(rendered: dict[str, str], tmp_path: Path) -> None:
    report = check_helm.security_lint(rendered, tmp_path)
    assert report.findings == [], "\n".join(str(finding) for finding in report.findings)

    # Every justification in the chart carries a reason and still suppresses something:
    # a stale skip would hide a future regression of the check it names.
    honoured = {
        (s.check_id, s.resource.split(".")[0] + "." + s.resource.split(".")[-1])
        for s in report.suppressions
    }
    for name, output in rendered.items():
        for resource, check_id, reason in check_helm.declared_skips(check_helm.documents(output)):
            assert len(reason) >= 30, f"{name}: {resource} {check_id}: say why, not just that"
            assert (check_id, resource) in honoured, (
                f"{resource}: {check_id} skip suppresses nothing"
            )


@tool_timeout
def test_security_lint_reports_an_insecure_container(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    """checkov really scans what we render: a privileged container is a finding."""
    insecure = rendered["minimal"].replace("privileged: false", "privileged: true")
    report = check_helm.security_lint({"insecure": insecure}, tmp_path)
    assert any(finding.check_id == "CKV_K8S_16" for finding in report.findings)


# --- values.yaml and values.schema.json ---------------------------------------------------


def uncommented_keys(text: str) -> list[str]:
    """Keys of a values file whose nearest non-blank line above is not a comment."""
    lines = text.splitlines()
    missing = []
    for number, line in enumerate(lines):
        if not re.match(r"^\s*(- )?[A-Za-z0-9_.\"'/-]+:(\s|$)", line):
            continue
        above = next((lines[i].strip() for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        if not above.startswith("#"):
            missing.append(f"line {number + 1}: {line.strip()}")
    return missing


def test_every_value_has_a_comment_above_it() -> None:
    text = (CHART / "values.yaml").read_text()
    assert uncommented_keys(text) == []
    # Sanity of the rule itself: it sees nested keys and list items.
    assert uncommented_keys("# a\na:\n  b: 1\n") == ["line 3: b: 1"]
    assert uncommented_keys("# a\na:\n  # b\n  - c: 1\n") == []
    assert uncommented_keys("# a\na:\n  - c: 1\n") == ["line 3: - c: 1"]


def undescribed_values(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Value paths a closed object of the schema does not declare."""
    if not isinstance(values, dict) or "properties" not in schema:
        return []
    missing = []
    for key, value in values.items():
        if key not in schema["properties"]:
            if schema.get("additionalProperties") is False:
                missing.append(f"{path}{key}")
            continue
        missing += undescribed_values(value, schema["properties"][key], f"{path}{key}.")
    return missing


def test_values_schema_describes_every_value() -> None:
    """The schema is closed (a typo fails the install) and knows every value."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) == set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert undescribed_values(values, schema) == []
    assert undescribed_values({"gateway": {"replicaz": 1}}, schema) == ["gateway.replicaz"]


@tool_timeout
@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("gateway.replicaCount=-1", "replicaCount"),
        ("gateway.grpcPort=70000", "grpcPort"),
        ("gateway.service.type=Public", "type"),
        ("pulsar.serviceUrl=http://pulsar:6650", "serviceUrl"),
        ("image.digest=latest", "digest"),
        ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("gateway.replicas=3", "replicas"),
        ("pulsar.stateStorageUrl=http://pulsar-bookie:4181", "stateStorageUrl"),
        # The broker's signing key comes from a Secret, never from a literal in values.
        ("pulsar.tokenSecretKey.value=not-a-key", "value"),
    ],
)
def test_values_schema_rejects_a_bad_value(tools: None, assignment: str, complaint: str) -> None:
    with pytest.raises(check_helm.CheckFailed, match=complaint) as failure:
        check_helm.helm_template([scenario("minimal")], set_values=[assignment])
    assert "schema" in str(failure.value)


@tool_timeout
def test_placeholder_credentials_are_refused(tools: None) -> None:
    """Without a Secret reference the chart will not render the CHANGE-ME placeholders."""
    with pytest.raises(check_helm.CheckFailed, match="CHANGE-ME"):
        check_helm.helm_template()
    with pytest.raises(check_helm.CheckFailed, match="CHANGE-ME"):
        check_helm.helm_template([scenario("production")], set_values=["secrets.existingSecret="])


# --- what the rendered chart must contain -------------------------------------------------


@tool_timeout
@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_every_resource_carries_the_standard_labels(rendered: dict[str, str], name: str) -> None:
    for doc in check_helm.documents(rendered[name]):
        labels = doc["metadata"]["labels"]
        for label in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert label in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks {label}"
        assert doc["metadata"]["namespace"] == check_helm.NAMESPACE


@tool_timeout
@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_every_pod_is_locked_down(rendered: dict[str, str], name: str) -> None:
    for where, spec in pod_specs(check_helm.documents(rendered[name])):
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["runAsNonRoot"] is True, where
            assert container["resources"]["requests"] and container["resources"]["limits"], where


@tool_timeout
def test_gateway_probes_and_graceful_shutdown(rendered: dict[str, str]) -> None:
    docs = check_helm.documents(rendered["minimal"])
    deployment = one(docs, "Deployment", "gateway")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    assert container["args"] == ["gateway", "serve", "--workers", "1"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # The grace period covers the preStop delay and leaves time to drain.
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 20
    service = one(docs, "Service", "gateway")
    # /metrics is on loopback by default (see test_metrics_stay_in_the_pod_by_default).
    assert {port["name"] for port in service["spec"]["ports"]} == {"grpc", "http"}
    assert one(docs, "PodDisruptionBudget", "gateway")["spec"]["maxUnavailable"] == 1


@tool_timeout
def test_migrations_run_before_and_functions_deploy_after_every_release(
    rendered: dict[str, str],
) -> None:
    docs = check_helm.documents(rendered["minimal"])
    migrations = one(docs, "Job", "migrations")
    functions = one(docs, "Job", "functions-deploy")
    hook = "helm.sh/hook"
    weight = "helm.sh/hook-weight"
    assert migrations["metadata"]["annotations"][hook] == "pre-install,pre-upgrade"
    assert functions["metadata"]["annotations"][hook] == "post-install,post-upgrade"
    assert migrations["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert functions["spec"]["template"]["spec"]["containers"][0]["args"] == [
        *("functions", "deploy", "--all"),
        *("--parallelism", "1"),
    ]
    # What the migrations pod needs exists before it: hooks with a lower weight.
    for kind in ("ServiceAccount", "ConfigMap", "Secret"):
        resource = one(docs, kind)
        assert resource["metadata"]["annotations"][hook] == "pre-install,pre-upgrade", kind
        assert int(resource["metadata"]["annotations"][weight]) < int(
            migrations["metadata"]["annotations"][weight]
        ), kind


def env_names(container: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}


@tool_timeout
def test_each_container_gets_only_the_credentials_it_uses(rendered: dict[str, str]) -> None:
    docs = check_helm.documents(rendered["minimal"])
    gateway = one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    admin = one(docs, "Deployment", "admin")["spec"]["template"]["spec"]["containers"][0]
    migrations = one(docs, "Job", "migrations")["spec"]["template"]["spec"]["containers"][0]
    functions = one(docs, "Job", "functions-deploy")["spec"]["template"]["spec"]["containers"][0]
    assert "MAGNETAR_DATABASE_OWNER_URL" in env_names(migrations)
    assert "MAGNETAR_DATABASE_OWNER_URL" not in env_names(gateway) | env_names(functions)
    # The platform admin key is the admin plane's alone.
    assert "MAGNETAR_ADMIN_API_KEY" in env_names(admin)
    assert "MAGNETAR_ADMIN_API_KEY" not in env_names(gateway) | env_names(functions)
    assert not {m["name"] for m in migrations["volumeMounts"]} & {"pulsar-token"}
    configmap = one(docs, "ConfigMap")
    token_file = configmap["data"]["MAGNETAR_PULSAR_ADMIN_TOKEN_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in admin["volumeMounts"]}
    assert token_file == f"{mounts['pulsar-token']}/token"
    for key in (
        "MAGNETAR_PULSAR_SERVICE_URL",
        "MAGNETAR_PULSAR_ADMIN_URL",
        "MAGNETAR_GRPC_PORT",
        "MAGNETAR_ADMIN_GRPC_PORT",
        "MAGNETAR_METRICS_HOST",
        "MAGNETAR_METRICS_PORT",
        "MAGNETAR_APP_ROLE",
        "MAGNETAR_FUNCTIONS_DATABASE_URL_FILE",
    ):
        assert key in configmap["data"], key


@tool_timeout
@pytest.mark.parametrize(
    ("name", "secrets"),
    [
        ("production", {"magnetar-credentials", "magnetar-pulsar-token-key"}),
        (
            "external-secrets",
            {"magnetar-external", "pulsar-token-admin", "pulsar-token-symmetric-key"},
        ),
    ],
)
def test_real_secret_references_leave_no_credential_in_the_manifests(
    rendered: dict[str, str], name: str, secrets: set[str]
) -> None:
    docs = check_helm.documents(rendered[name])
    assert kinds(docs, "Secret") == []
    referenced = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for _, spec in pod_specs(docs)
        for container in spec["containers"]
        for entry in container.get("env", [])
        if "valueFrom" in entry
    } | {
        volume["secret"]["secretName"]
        for _, spec in pod_specs(docs)
        for volume in spec["volumes"]
        if "secret" in volume and volume["name"] in ("pulsar-token", "pulsar-token-secret-key")
    }
    assert referenced == secrets


@tool_timeout
def test_external_secrets_scenario_reads_each_credential_where_it_lives(
    rendered: dict[str, str],
) -> None:
    docs = check_helm.documents(rendered["external-secrets"])
    admin = one(docs, "Deployment", "admin")["spec"]["template"]["spec"]
    (token_volume,) = [v for v in admin["volumes"] if v["name"] == "pulsar-token"]
    assert token_volume["secret"]["secretName"] == "pulsar-token-admin"
    assert token_volume["secret"]["items"] == [{"key": "TOKEN", "path": "token"}]
    refs = {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]
        for entry in admin["containers"][0]["env"]
        if "valueFrom" in entry
    }
    assert refs["MAGNETAR_DATABASE_URL"] == {"name": "magnetar-external", "key": "app-url"}
    functions = one(docs, "Job", "functions-deploy")["spec"]["template"]["spec"]["containers"][0]
    assert functions["args"] == [
        *("functions", "deploy", "--tenant", "acme"),
        *("--parallelism", "4"),
    ]


@tool_timeout
def test_production_scenario_autoscales_with_tls_and_fences(rendered: dict[str, str]) -> None:
    docs = check_helm.documents(rendered["production"])
    deployment = one(docs, "Deployment", "gateway")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one(docs, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    ingress = one(docs, "Ingress", "gateway")
    assert ingress["spec"]["tls"][0]["secretName"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "@sha256:" in container["image"]
    assert {"SSL_CERT_FILE", "PGSSLROOTCERT"} <= env_names(container)
    configmap = one(docs, "ConfigMap")
    assert configmap["data"]["MAGNETAR_PULSAR_SERVICE_URL"].startswith("pulsar+ssl://")
    assert configmap["data"]["MAGNETAR_PULSAR_ADMIN_URL"].startswith("https://")
    one(docs, "NetworkPolicy")
    one(docs, "ServiceMonitor", "gateway")


KEY_FILE_ENV = "MAGNETAR_PULSAR_TOKEN_SECRET_KEY_FILE"
STATE_STORAGE_ENV = "MAGNETAR_PULSAR_STATE_STORAGE_URL"
KEY_VOLUME = "pulsar-token-secret-key"


def test_the_chart_sets_the_settings_the_code_reads() -> None:
    """The variable names the chart renders are the ones Settings.load looks up."""
    names = {f"MAGNETAR_{field.name.upper()}" for field in fields(Settings)}
    assert {KEY_FILE_ENV, STATE_STORAGE_ENV, "MAGNETAR_GATEWAY_REPLICAS"} <= names


def gateway_pod(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return component_pod(docs, "gateway")


def component_pod(
    docs: list[dict[str, Any]], component: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = one(docs, "Deployment", component)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


@tool_timeout
def test_each_gateway_replica_knows_how_many_share_the_quotas(rendered: dict[str, str]) -> None:
    """Without autoscaling the replica count; with it, the autoscaler's minimum."""
    minimal = yaml.safe_load(scenario("minimal").read_text())["gateway"]
    production = yaml.safe_load(scenario("production").read_text())["gateway"]
    expected = {
        "minimal": minimal["replicaCount"],
        "production": production["autoscaling"]["minReplicas"],
    }
    for name, count in expected.items():
        _, container = gateway_pod(check_helm.documents(rendered[name]))
        env = {entry["name"]: entry.get("value") for entry in container["env"]}
        assert env["MAGNETAR_GATEWAY_REPLICAS"] == str(count), name


@tool_timeout
def test_admin_plane_signs_tenant_tokens_with_the_broker_key_mounted_read_only(
    tools: None,
) -> None:
    docs = check_helm.documents(
        check_helm.helm_template(
            [scenario("minimal")],
            set_values=[
                "pulsar.tokenSecretKey.existingSecret=broker-signing-key",
                "pulsar.tokenSecretKey.key=HS256KEY",
            ],
        )
    )
    spec, container = component_pod(docs, "admin")
    (volume,) = [v for v in spec["volumes"] if v["name"] == KEY_VOLUME]
    assert volume["secret"]["secretName"] == "broker-signing-key"
    assert volume["secret"]["items"] == [{"key": "HS256KEY", "path": "secret.key"}]
    # Readable by the pod's group (fsGroup) only, never world-readable or writable.
    assert volume["secret"]["defaultMode"] == 0o440
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == KEY_VOLUME]
    assert mount["readOnly"] is True
    (entry,) = [e for e in container["env"] if e["name"] == KEY_FILE_ENV]
    # The path of the file, not the key: the key itself is never in the environment.
    assert entry == {"name": KEY_FILE_ENV, "value": f"{mount['mountPath']}/secret.key"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Only the admin plane signs tenant tokens: the gateway and the Jobs get neither the key
    # nor its path.
    for kind, component in (
        ("Deployment", "gateway"),
        ("Job", "migrations"),
        ("Job", "functions-deploy"),
    ):
        job = one(docs, kind, component)["spec"]["template"]["spec"]
        assert KEY_VOLUME not in {v["name"] for v in job["volumes"]}, component
        assert KEY_FILE_ENV not in env_names(job["containers"][0]), component
    assert KEY_FILE_ENV not in one(docs, "ConfigMap")["data"]


@tool_timeout
def test_without_a_token_secret_key_the_gateway_gets_no_key_and_the_notes_warn(
    rendered: dict[str, str], tools: None
) -> None:
    """The opted-out fallback: no key mounted, so the gateway uses the superuser token."""
    docs = check_helm.documents(rendered["minimal"])
    for component in ("gateway", "admin"):
        spec, container = component_pod(docs, component)
        assert KEY_VOLUME not in {v["name"] for v in spec["volumes"]}
        assert KEY_VOLUME not in {m["name"] for m in container["volumeMounts"]}
        assert KEY_FILE_ENV not in env_names(container)
    _, container = gateway_pod(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MAGNETAR_PRODUCER_CREDENTIALS"] == "superuser"
    assert KEY_FILE_ENV not in one(docs, "ConfigMap")["data"]
    notes = check_helm.render_notes([scenario("minimal")])
    assert "pulsar.allowSuperuserProducers is set" in notes
    assert "superuser token for every tenant" in notes
    assert "pulsar.tokenSecretKey" not in check_helm.render_notes([scenario("production")])


@tool_timeout
def test_production_scenario_mounts_the_key_and_reaches_the_state_storage(
    rendered: dict[str, str],
) -> None:
    docs = check_helm.documents(rendered["production"])
    _, container = component_pod(docs, "admin")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[KEY_FILE_ENV] == f"{mounts[KEY_VOLUME]}/secret.key"
    url = "bk://pulsar-bookie.pulsar.svc.cluster.local:4181"
    assert one(docs, "ConfigMap")["data"][STATE_STORAGE_ENV] == url
    # The NetworkPolicy lets the pods reach the state storage's port on the Pulsar peers,
    # on top of the Pulsar ports the scenario narrowed to 6651 and 443.
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]

    def rules_to(port: int) -> list[dict[str, Any]]:
        return [r for r in egress if {"port": port, "protocol": "TCP"} in r.get("ports", [])]

    (pulsar_rule,) = rules_to(6651)
    (state_rule,) = rules_to(4181)
    assert state_rule["to"] == pulsar_rule["to"]
    assert state_rule["ports"] == [{"port": 4181, "protocol": "TCP"}]


@tool_timeout
def test_without_a_state_storage_url_none_is_configured(rendered: dict[str, str]) -> None:
    for name in ("minimal", "external-secrets"):
        docs = check_helm.documents(rendered[name])
        assert STATE_STORAGE_ENV not in one(docs, "ConfigMap")["data"], name
        for where, spec in pod_specs(docs):
            assert STATE_STORAGE_ENV not in env_names(spec["containers"][0]), where


@tool_timeout
def test_notes_tell_how_to_reach_the_gateway_and_create_a_tenant(tools: None) -> None:
    notes = check_helm.render_notes([scenario("minimal")])
    assert "port-forward svc/magnetar-gateway 50051:50051" in notes
    assert "port-forward svc/magnetar-admin 50052:50052" in notes
    assert "localhost:50052 magnetar.v1.TenantService/CreateTenant" in notes
    assert "authorization: Bearer" in notes


PLATFORM_CREDENTIALS = {"MAGNETAR_ADMIN_API_KEY", KEY_FILE_ENV}
PLATFORM_VOLUMES = {"pulsar-token", KEY_VOLUME}


@tool_timeout
@pytest.mark.parametrize("name", ["production", "external-secrets"])
def test_the_public_gateway_pod_holds_no_platform_credential(
    rendered: dict[str, str], name: str
) -> None:
    """With a signing key, the gateway gets the database URL and nothing of the platform's:
    no signing key, no superuser token, no admin key; the admin plane gets them."""
    docs = check_helm.documents(rendered[name])
    spec, container = gateway_pod(docs)
    assert not {v["name"] for v in spec["volumes"]} & PLATFORM_VOLUMES
    assert not {m["name"] for m in container["volumeMounts"]} & PLATFORM_VOLUMES
    assert not env_names(container) & (PLATFORM_CREDENTIALS | {"MAGNETAR_PRODUCER_CREDENTIALS"})
    admin_spec, admin = component_pod(docs, "admin")
    assert {v["name"] for v in admin_spec["volumes"]} >= PLATFORM_VOLUMES
    assert env_names(admin) >= PLATFORM_CREDENTIALS
    assert admin["args"] == ["admin", "serve"]


@tool_timeout
@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_the_admin_service_is_cluster_internal_and_behind_no_ingress(
    rendered: dict[str, str], name: str
) -> None:
    docs = check_helm.documents(rendered[name])
    admin_service = one(docs, "Service", "admin")
    assert admin_service["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in admin_service["spec"]["ports"]] == ["admin-grpc"]
    backends = {
        path["backend"]["service"]["name"]
        for ingress in kinds(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert admin_service["metadata"]["name"] not in backends
    # The Services an Ingress routes to never select the admin pods.
    admin_labels = one(docs, "Deployment", "admin")["spec"]["template"]["metadata"]["labels"]
    for service in kinds(docs, "Service"):
        if service["metadata"]["name"] in backends:
            selector = service["spec"]["selector"].items()
            assert not selector <= admin_labels.items(), service["metadata"]["name"]
    # The public gateway's port is not the admin plane's, so its NetworkPolicy rule (open to
    # grpcFrom) does not open TenantService.
    _, admin = component_pod(docs, "admin")
    assert [p["name"] for p in admin["ports"]] == ["admin-grpc"]


# --- the Dockerfile -----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    arguments: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined, each tagged with its stage name."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions = []
    stage = "(global)"
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)$", arguments, re.IGNORECASE)
            stage = match.group(1) if match else arguments
        instructions.append(Instruction(stage, keyword, arguments.strip()))
    return instructions


DOCKERFILE = dockerfile_instructions((REPO / "Dockerfile").read_text())


def in_stage(stage: str, keyword: str | None = None) -> list[Instruction]:
    return [i for i in DOCKERFILE if i.stage == stage and (keyword is None or i.keyword == keyword)]


def build_arg_default(name: str) -> str:
    for instruction in in_stage("(global)", "ARG"):
        key, _, value = instruction.arguments.partition("=")
        if key == name:
            return value
    raise AssertionError(f"no global ARG {name}")


def test_dockerfile_is_multi_stage_on_the_pinned_bases() -> None:
    assert build_arg_default("PYTHON_IMAGE") == "python:3.11-slim"
    # The worker layer sits on the Pulsar release the project runs everywhere else.
    assert build_arg_default("PULSAR_IMAGE") == f"apachepulsar/pulsar:{PULSAR_VERSION}"
    stages = {i.stage: i.arguments for i in DOCKERFILE if i.keyword == "FROM"}
    assert {"build", "venv", "function-package", "wheel", "functions-worker", "runtime"} <= set(
        stages
    )
    assert stages["runtime"].startswith("${PYTHON_IMAGE} ")
    assert stages["functions-worker"].startswith("${PULSAR_IMAGE} ")
    # The runtime takes the virtualenv, not the build tools.
    copied_from = {
        m.group(1)
        for i in in_stage("runtime", "COPY")
        if (m := re.search(r"--from=(\S+)", i.arguments))
    }
    assert copied_from == {"venv", "function-package"}


def test_deliverable_images_end_as_a_non_root_user() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for stage in ("runtime", "functions-worker"):
        users = in_stage(stage, "USER")
        assert users, f"{stage} sets no USER"
        user = users[-1].arguments.split(":")[0]
        assert user.isdigit() and int(user) != 0, f"{stage} ends as {user}"
    runtime_user = int(in_stage("runtime", "USER")[-1].arguments.split(":")[0])
    # The chart's runAsUser is the image's user, so runAsNonRoot holds without surprises.
    assert values["podSecurityContext"]["runAsUser"] == runtime_user
    assert values["containerSecurityContext"]["runAsUser"] == runtime_user


def test_runtime_image_has_healthcheck_entrypoint_and_the_chart_ports() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert in_stage("runtime", "HEALTHCHECK"), "HEALTHCHECK documents how to probe the gateway"
    assert "grpc_health" in in_stage("runtime", "HEALTHCHECK")[0].arguments
    assert in_stage("runtime", "ENTRYPOINT")[0].arguments == '["magnetar"]'
    assert in_stage("runtime", "CMD")[0].arguments == '["gateway", "serve"]'
    exposed = {int(p) for i in in_stage("runtime", "EXPOSE") for p in i.arguments.split()}
    assert {values["gateway"]["grpcPort"], values["gateway"]["metricsPort"]} <= exposed


def test_dockerfile_builds_the_wheel_reproducibly() -> None:
    build = in_stage("build")
    keywords = [(i.keyword, i.arguments) for i in build]
    epoch_env = next(
        n for n, (k, a) in enumerate(keywords) if k == "ENV" and "SOURCE_DATE_EPOCH=" in a
    )
    wheel_build = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "-m build" in a)
    assert epoch_env < wheel_build
    assert "--no-isolation" in keywords[wheel_build][1], "build tools must be the pinned ones"
    tool_install = next(a for k, a in keywords if k == "RUN" and "pip install" in a)
    for tool in ("build", "setuptools", "wheel"):
        assert re.search(rf'"{tool}==[0-9.]+"', tool_install), f"{tool} is not pinned"
    assert any("SOURCE_DATE_EPOCH=" in i.arguments for i in in_stage("function-package", "ENV")), (
        "the function package must be reproducible too"
    )
    assert "magnetar functions package" in " ".join(
        i.arguments for i in in_stage("function-package", "RUN")
    )


def test_runtime_image_has_the_functions_extra_for_state_storage() -> None:
    # Onboarding creates a tenant's function state namespace through the BookKeeper client,
    # which only magnetar's `functions` extra brings: without it, a chart that sets
    # pulsar.stateStorageUrl fails every CreateTenant.
    wheels = " ".join(i.arguments for i in in_stage("build", "RUN"))
    assert re.search(r"pip wheel .*\[functions\]", wheels), "the wheels lack the functions extra"
    venv = " ".join(i.arguments for i in in_stage("venv", "RUN"))
    assert '"magnetar[functions]"' in venv, "the runtime venv lacks the functions extra"


def distribution_folders() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in patterns})


def test_dockerfile_and_dockerignore_ship_every_package_and_nothing_private() -> None:
    copies = " ".join(i.arguments for i in in_stage("build", "COPY"))
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore must be an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for folder in distribution_folders():
        assert f"{folder}/ {folder}/" in copies, f"the build stage does not copy {folder}/"
        assert folder in allowed, f".dockerignore keeps {folder}/ out of the context"
    assert {"pyproject.toml", "README.md"} <= allowed
    # Local state holds generated keys and tokens; it must never be in the context.
    assert allowed.isdisjoint({".magnetar", ".venv", ".git", ".env", "."})
    secretish = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|PRIVATE)", re.IGNORECASE)
    for instruction in DOCKERFILE:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(instruction.arguments), instruction


def distribution_sources(destination: Path, mtime: float | None = None) -> Path:
    """What the Docker build context holds, per .dockerignore, copied to destination."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "results")
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    for folder in distribution_folders():
        shutil.copytree(REPO / folder, destination / folder, ignore=ignore)
    if mtime is not None:
        for path in destination.rglob("*"):
            os.utime(path, (mtime, mtime))
    return destination


def build_wheel(source: Path, out: Path, epoch: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("--wheel-dir", str(out), str(source)),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = out.glob("magnetar-*.whl")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
def test_wheel_is_byte_identical_across_builds_with_source_date_epoch(tmp_path: Path) -> None:
    """What the build stage relies on: same sources + SOURCE_DATE_EPOCH = same bytes."""
    first = distribution_sources(tmp_path / "a" / "src")
    # Different paths and file times, as two CI machines would have.
    second = distribution_sources(tmp_path / "b" / "src", mtime=1_900_000_000)
    epoch = "1704067200"
    digest_a = build_wheel(first, tmp_path / "a" / "out", epoch)
    digest_b = build_wheel(second, tmp_path / "b" / "out", epoch)
    assert digest_a == digest_b
    # And the check can tell: without SOURCE_DATE_EPOCH the file times leak into the wheel.
    digest_c = build_wheel(second, tmp_path / "c" / "out", None)
    assert digest_c != digest_a


# --- secure defaults: producer isolation, NetworkPolicy, metrics kept in the pod ----------


@tool_timeout
def test_rendering_without_the_signing_key_fails_unless_explicitly_opted_out(
    tools: None,
) -> None:
    """Without the broker's key every tenant's producers would use the superuser token."""
    refused = ["pulsar.allowSuperuserProducers=false"]
    with pytest.raises(check_helm.CheckFailed, match=r"allowSuperuserProducers=true"):
        check_helm.helm_template([scenario("minimal")], set_values=refused)
    without_key = ["pulsar.tokenSecretKey.existingSecret="]
    with pytest.raises(check_helm.CheckFailed, match=r"tokenSecretKey\.existingSecret is empty"):
        check_helm.helm_template([scenario("production")], set_values=without_key)
    # The opt-out renders (the minimal scenario sets it), and so does a named key.
    opted_out = ["pulsar.allowSuperuserProducers=true"]
    one(
        check_helm.documents(check_helm.helm_template([scenario("minimal")])),
        "Deployment",
        "gateway",
    )
    docs = check_helm.documents(
        check_helm.helm_template([scenario("production")], set_values=without_key + opted_out)
    )
    one(docs, "Deployment", "gateway")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["pulsar"]["allowSuperuserProducers"] is False


@tool_timeout
@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_network_policy_is_on_by_default(rendered: dict[str, str], name: str) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["networkPolicy"]["enabled"] is True
    policy = one(check_helm.documents(rendered[name]), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def metrics_ports(docs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Where the chart declares the metrics port: pod, Service, NetworkPolicy."""
    _, container = gateway_pod(docs)
    service = one(docs, "Service", "gateway")
    policy = one(docs, "NetworkPolicy")
    return {
        "pod": [p for p in container["ports"] if p["name"] == "http-metrics"],
        "service": [p for p in service["spec"]["ports"] if p["name"] == "http-metrics"],
        "policy": [
            rule
            for rule in policy["spec"]["ingress"]
            if any(p["port"] == "http-metrics" for p in rule["ports"])
        ],
    }


@tool_timeout
def test_metrics_stay_in_the_pod_by_default(rendered: dict[str, str]) -> None:
    docs = check_helm.documents(rendered["minimal"])
    data = one(docs, "ConfigMap")["data"]
    assert data["MAGNETAR_METRICS_HOST"] == "127.0.0.1"
    assert data["MAGNETAR_METRICS_HOST"] != data["MAGNETAR_GRPC_HOST"]
    assert metrics_ports(docs) == {"pod": [], "service": [], "policy": []}


@tool_timeout
def test_scraped_metrics_bind_their_own_address_and_are_fenced(rendered: dict[str, str]) -> None:
    docs = check_helm.documents(rendered["production"])
    assert one(docs, "ConfigMap")["data"]["MAGNETAR_METRICS_HOST"] == "0.0.0.0"
    ports = metrics_ports(docs)
    assert len(ports["pod"]) == len(ports["service"]) == 1
    (rule,) = ports["policy"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


@tool_timeout
def test_a_service_monitor_that_could_not_scrape_is_refused(tools: None) -> None:
    refusal = r"serviceMonitor\.enabled: gateway\.metricsHost"
    with pytest.raises(check_helm.CheckFailed, match=refusal):
        check_helm.helm_template(
            [scenario("production")], set_values=["gateway.metricsHost=127.0.0.1"]
        )


@tool_timeout
def test_the_http_door_is_bound_exposed_and_fenced_like_grpc(rendered: dict[str, str]) -> None:
    docs = check_helm.documents(rendered["minimal"])
    (container,) = one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    service = one(docs, "Service", "gateway")
    [http] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert (http["targetPort"], http["appProtocol"]) == ("http", "http")
    configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
    settings = next(c["data"] for c in configmaps if "MAGNETAR_HTTP_PORT" in c["data"])
    # Bound on every address of the pod, on the port the container declares.
    assert settings["MAGNETAR_HTTP_HOST"] == "0.0.0.0"
    assert int(settings["MAGNETAR_HTTP_PORT"]) == http_port
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    admitted = [port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]]
    assert "http" in admitted
