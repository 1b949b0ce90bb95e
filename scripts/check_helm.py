"""Checks of the Helm chart: lint, render, Kubernetes schema validation, security lint.

Used by ``tests/helm/test_chart.py`` (inside ``make test``) and runnable by hand::

    .venv/bin/python scripts/check_helm.py          # every check, every scenario

The tools live in ``.magnetar/tools`` and are installed by ``scripts/install_k8s_tools.sh``
on first use: helm (built with ``go install``), and in a virtualenv of their own checkov
(the security lint) and kubernetes-validate (ships the Kubernetes JSON schemas, so the
validation works offline). kube-linter is not used: the Go module proxy does not serve its
module path.

Scenarios are the ``helm/magnetar/ci/*-values.yaml`` files. Each is rendered for the oldest
Kubernetes the chart supports (Chart.yaml ``kubeVersion``) and for the newest schema
kubernetes-validate ships, so both removed and not-yet-available APIs are caught.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "magnetar"
SCENARIOS_DIR = CHART / "ci"
TOOLS_DIR = Path(os.environ.get("MAGNETAR_TOOLS_DIR", REPO / ".magnetar" / "tools"))
INSTALLER = REPO / "scripts" / "install_k8s_tools.sh"

HELM = TOOLS_DIR / "bin" / "helm"
TOOLS_PYTHON_BIN = TOOLS_DIR / "venv" / "bin"
CHECKOV = TOOLS_PYTHON_BIN / "checkov"
KUBERNETES_VALIDATE = TOOLS_PYTHON_BIN / "kubernetes-validate"

RELEASE = "magnetar"
NAMESPACE = "magnetar"
# Oldest supported (native gRPC probes are GA from 1.27) and newest schema shipped.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")

# Kinds from CRDs: kubernetes-validate has no schema for them, so they are checked against
# the part of their CRD schema that the chart uses (see CRD_SCHEMAS).
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object"}},
                    "additionalProperties": False,
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                        "any": {"type": "boolean"},
                    },
                    "additionalProperties": False,
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {"ServiceMonitor": SERVICE_MONITOR_SCHEMA}

# The chart justifies a security-lint finding with a checkov skip annotation on the
# resource: `checkov.io/skipN: CKV_K8S_NN=<reason>`.
SKIP_ANNOTATION = re.compile(r"^checkov\.io/skip\d+$")
SKIP_VALUE = re.compile(r"^(?P<check>CKV2?_K8S_\d+)=(?P<reason>.+)$")

# checkov reaches out to its vendor's API for guidelines and to PyPI for a version check;
# this keeps it offline and deterministic.
CHECKOV_ENV = {
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",
    "LOG_LEVEL": "ERROR",
}


class CheckFailed(Exception):
    """A check found a problem; the message says which and where."""


@dataclass(frozen=True)
class Finding:
    """One failed security check on one rendered resource."""

    scenario: str
    check_id: str
    name: str
    resource: str

    def __str__(self) -> str:
        return f"{self.scenario}: {self.check_id} {self.name} on {self.resource}"


@dataclass(frozen=True)
class Suppression:
    """One finding a chart annotation justified, as checkov reported it."""

    scenario: str
    check_id: str
    resource: str


@dataclass(frozen=True)
class SecurityReport:
    findings: list[Finding]
    suppressions: list[Suppression]


def run(command: Sequence[str | Path], *, env: dict[str, str] | None = None) -> str:
    """Run a tool; its stdout, or CheckFailed with everything it printed."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise CheckFailed(
            f"{' '.join(str(part) for part in command)} exited {result.returncode}\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def ensure_tools() -> None:
    """Install helm, checkov and kubernetes-validate at their pinned versions.

    The installer compares stamp files and returns at once when everything is current, so
    calling it every time costs nothing and a version bump in it takes effect by itself.
    """
    run(["bash", INSTALLER])


def scenarios() -> list[Path]:
    return sorted(SCENARIOS_DIR.glob("*-values.yaml"))


def scenario_name(values_file: Path) -> str:
    return values_file.name.removesuffix("-values.yaml")


def helm_lint(values_file: Path) -> str:
    return run(
        [
            HELM,
            "lint",
            "--strict",
            CHART,
            "--kube-version",
            KUBERNETES_VERSIONS[-1],
            "--values",
            values_file,
        ]
    )


def helm_template(
    values: Sequence[Path] = (),
    *,
    set_values: Sequence[str] = (),
    kube_version: str = KUBERNETES_VERSIONS[-1],
) -> str:
    """The chart rendered as one multi-document YAML string (hooks included)."""
    command: list[str | Path] = [
        HELM,
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
    ]
    for values_file in values:
        command += ["--values", values_file]
    for assignment in set_values:
        command += ["--set", assignment]
    return run(command)


def render_notes(values: Sequence[Path] = ()) -> str:
    """NOTES.txt as an install would print it.

    `helm install --dry-run` insists on reaching a cluster, and `helm template` leaves the
    notes out; so a copy of the chart gets one extra template that renders NOTES.txt into
    a ConfigMap, and only that template is shown.
    """
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "zz-rendered-notes.yaml").write_text(
            '{{- define "check.notes" -}}\n'
            + notes
            + "\n{{- end }}\n"
            + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered-notes\n"
            + 'data:\n  notes: {{ include "check.notes" . | toJson }}\n'
        )
        command: list[str | Path] = [HELM, "template", RELEASE, chart, "--namespace", NAMESPACE]
        command += ["--show-only", "templates/zz-rendered-notes.yaml"]
        for values_file in values:
            command += ["--values", values_file]
        (configmap,) = documents(run(command))
        return str(configmap["data"]["notes"])


def documents(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def validate_schemas(rendered: str, kube_version: str, workdir: Path) -> None:
    """Every manifest against the Kubernetes schemas (strict: unknown fields fail)."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / f"manifests-{kube_version}.yaml"
    manifest.write_text(rendered)
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", kube_version, str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = []
    for line in (result.stdout + result.stderr).splitlines():
        if not line.strip():
            continue
        crd = re.search(r"Couldn't find schema for kind (\w+)", line)
        if line.startswith("WARN") and crd and crd.group(1) in CRD_SCHEMAS:
            continue
        problems.append(line)
    if result.returncode != 0 or problems:
        raise CheckFailed(f"Kubernetes {kube_version} schema validation:\n" + "\n".join(problems))
    validate_crd_kinds(documents(rendered))


def validate_crd_kinds(docs: list[dict[str, Any]]) -> None:
    """CRD kinds against the part of their schema the chart uses (jsonschema in the tools venv)."""
    crd_docs = [doc for doc in docs if doc.get("kind") in CRD_SCHEMAS]
    if not crd_docs:
        return
    program = (
        "import json, sys, jsonschema\n"
        "pairs = json.load(sys.stdin)\n"
        "errors = [f\"{doc['kind']}/{doc['metadata']['name']}: {e.message}\"\n"
        "          for schema, doc in pairs\n"
        "          for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]\n"
        "print('\\n'.join(errors)); sys.exit(1 if errors else 0)\n"
    )
    pairs = [[CRD_SCHEMAS[doc["kind"]], doc] for doc in crd_docs]
    result = subprocess.run(
        [str(TOOLS_PYTHON_BIN / "python"), "-c", program],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CheckFailed(f"CRD kinds:\n{result.stdout}{result.stderr}")


def security_lint(rendered_by_scenario: dict[str, str], workdir: Path) -> SecurityReport:
    """checkov over every scenario's manifests: unjustified findings and honoured skips."""
    workdir.mkdir(parents=True, exist_ok=True)
    for scenario, rendered in rendered_by_scenario.items():
        (workdir / scenario).mkdir(exist_ok=True)
        (workdir / scenario / "manifests.yaml").write_text(rendered)
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(workdir),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **CHECKOV_ENV},
        check=False,
    )
    # Exit code 1 means "findings"; anything else, or no JSON, is a broken run.
    if result.returncode not in (0, 1):
        raise CheckFailed(f"checkov exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise CheckFailed(
            f"checkov printed no JSON report\n{result.stdout}\n{result.stderr}"
        ) from exc
    reports = report if isinstance(report, list) else [report]
    findings: list[Finding] = []
    suppressions: list[Suppression] = []
    for part in reports:
        results = part.get("results", {})
        for check in results.get("failed_checks", []):
            findings.append(
                Finding(
                    _scenario_of(check["file_path"]),
                    check["check_id"],
                    check["check_name"],
                    check["resource"],
                )
            )
        for check in results.get("skipped_checks", []):
            suppressions.append(
                Suppression(_scenario_of(check["file_path"]), check["check_id"], check["resource"])
            )
        if results.get("parsing_errors"):
            raise CheckFailed(f"checkov could not parse {results['parsing_errors']}")
    if not any(part.get("summary", {}).get("passed", 0) for part in reports):
        raise CheckFailed("checkov passed no check at all: it did not scan the manifests")
    return SecurityReport(findings, suppressions)


def _scenario_of(file_path: str) -> str:
    return Path(file_path).parent.name


def declared_skips(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """(resource kind/name, check id, reason) of every checkov skip annotation rendered."""
    for doc in docs:
        annotations = doc.get("metadata", {}).get("annotations") or {}
        for key, value in annotations.items():
            if SKIP_ANNOTATION.match(key):
                match = SKIP_VALUE.match(str(value))
                if not match:
                    raise CheckFailed(
                        f"{doc['kind']}/{doc['metadata']['name']}: malformed {key}: {value}"
                    )
                yield (
                    f"{doc['kind']}.{doc['metadata']['name']}",
                    match.group("check"),
                    match.group("reason").strip(),
                )


def main() -> int:
    """Every check over every scenario; prints what it did, exit 1 on any problem."""
    ensure_tools()
    rendered: dict[str, str] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for values_file in scenarios():
            name = scenario_name(values_file)
            try:
                helm_lint(values_file)
                for version in KUBERNETES_VERSIONS:
                    output = helm_template([values_file], kube_version=version)
                    validate_schemas(output, version, Path(tmp) / name)
                rendered[name] = output
                print(f"{name}: lint, render and schema validation passed")
            except CheckFailed as failure:
                problems.append(f"{name}: {failure}")
        if rendered:
            report = security_lint(rendered, Path(tmp) / "checkov")
            problems += [f"unjustified security finding: {finding}" for finding in report.findings]
            print(
                f"checkov: {len(report.findings)} unjustified findings, "
                f"{len(report.suppressions)} justified by chart annotations"
            )
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
