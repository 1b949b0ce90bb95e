#!/usr/bin/env bash
# Installs the tools that check the Helm chart into .magnetar/tools (git-ignored):
#   bin/helm         helm v3, built with `go install` through the Go module proxy
#   venv/bin/checkov the security lint for the rendered manifests (kube-linter's module
#                    is not served by the module proxy this project can reach)
#   venv/bin/kubernetes-validate  schema validation; ships the Kubernetes schemas, so it
#                    works offline
# Idempotent: each tool is skipped when the pinned version is already there, so the
# test suite can call this on every run and pay the build only once per machine.
# Concurrent callers serialise on a lock file.
set -euo pipefail

HELM_VERSION="v3.21.4"
# The Kubernetes version helm assumes when no cluster is asked (lint, template, dry runs):
# helm's release build derives it from its client-go module (v0.36 -> 1.36).
HELM_KUBE_MINOR="36"
CHECKOV_VERSION="3.3.30"
KUBERNETES_VALIDATE_VERSION="1.37.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${MAGNETAR_TOOLS_DIR:-$repo_root/.magnetar/tools}"
bin_dir="$tools_dir/bin"
venv_dir="$tools_dir/venv"
python="${PYTHON:-python3}"
mkdir -p "$bin_dir"

exec 9>"$tools_dir/.install.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

log() { printf 'install_k8s_tools: %s\n' "$*" >&2; }

# A stamp file beside each tool records what was installed; a mismatch reinstalls.
is_current() { [[ -x "$1" && -f "$1.version" && "$(cat "$1.version")" == "$2" ]]; }

install_helm() {
  local target="$bin_dir/helm"
  local wanted="$HELM_VERSION k8s1.$HELM_KUBE_MINOR"
  if is_current "$target" "$wanted"; then
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "error: the Go toolchain is missing; install Go (https://go.dev/doc/install) and retry"
    exit 2
  fi
  log "building helm $HELM_VERSION with go install (a few minutes on 2 cores)"
  local started=$SECONDS
  # The variables are what helm's own release build sets; without them `helm version`
  # reports a development build and templates see Kubernetes 1.20. GOFLAGS is reset so a
  # developer's settings (e.g. -mod=vendor) cannot change what gets built.
  GOBIN="$bin_dir" CGO_ENABLED=0 GOFLAGS="-buildvcs=false" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  printf '%s' "$wanted" >"$target.version"
  log "helm $HELM_VERSION installed in $((SECONDS - started))s"
}

install_python_tools() {
  local wanted="checkov==$CHECKOV_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  local stamp="$venv_dir/.installed"
  if [[ -x "$venv_dir/bin/checkov" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return
  fi
  log "installing $wanted into $venv_dir"
  local started=$SECONDS
  # A venv of its own: checkov's dependency tree must not move the project's pins.
  "$python" -m venv "$venv_dir"
  "$venv_dir/bin/pip" install -q --disable-pip-version-check --upgrade pip
  # shellcheck disable=SC2086 # word splitting of $wanted is intended
  "$venv_dir/bin/pip" install -q --disable-pip-version-check $wanted
  printf '%s' "$wanted" >"$stamp"
  log "python tools installed in $((SECONDS - started))s"
}

install_helm
install_python_tools
printf 'helm=%s\ncheckov=%s\nkubernetes-validate=%s\n' \
  "$bin_dir/helm" "$venv_dir/bin/checkov" "$venv_dir/bin/kubernetes-validate"
