#!/usr/bin/env bash
# Installs the tools that check the Helm chart into .magnetar/tools (git-ignored):
#   bin/helm         helm v3, built with `go install` through the Go module proxy
#   venv/bin/checkov the security lint for the rendered manifests (kube-linter's module
#                    is not served by the module proxy this project can reach)
#   venv/bin/kubernetes-validate  schema validation; ships the Kubernetes schemas, so it
#                    works offline
# With --control-plane, also what `make k8s-test` runs a real control plane with
# (scripts/k8s_control_plane.py, docs/kubernetes.md section 10):
#   bin/kube-apiserver, bin/kube-controller-manager, bin/kube-scheduler
#                    built from the Go module k8s.io/kubernetes (no release binaries can be
#                    fetched here): about 6 minutes on 2 cores, once per machine
#   bin/kwok         fake kubelet: nodes and pods without containers (`go install`)
#   share/kwok-stages/  the stage files shipped in kwok's module (nodes Ready, pods Running,
#                    Job pods Succeeded)
#   etcd             Debian's etcd-server package (apt-get, as root), on PATH
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
# The control plane of `make k8s-test`. The staging modules (k8s.io/api, ...) are published
# as v0.<minor>.<patch> of the same release.
KUBERNETES_VERSION="v1.34.3"
KUBERNETES_STAGING_VERSION="v0.34.3"
KWOK_VERSION="v0.8.0"
# Builds are niced and limited to this many parallel jobs: the machine is shared.
GO_BUILD_JOBS="${MAGNETAR_GO_BUILD_JOBS:-2}"

control_plane=false
for arg in "$@"; do
  case "$arg" in
    --control-plane) control_plane=true ;;
    *) printf 'usage: %s [--control-plane]\n' "$0" >&2; exit 2 ;;
  esac
done

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

require_go() {
  if ! command -v go >/dev/null 2>&1; then
    log "error: the Go toolchain is missing; install Go (https://go.dev/doc/install) and retry"
    exit 2
  fi
}

install_helm() {
  local target="$bin_dir/helm"
  local wanted="$HELM_VERSION k8s1.$HELM_KUBE_MINOR"
  if is_current "$target" "$wanted"; then
    return
  fi
  require_go
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

# kube-apiserver, kube-controller-manager and kube-scheduler from the k8s.io/kubernetes module.
# The module is built outside its own repository, so its workspace and vendor tree go and each
# `k8s.io/<x> => ./staging/...` replace becomes a requirement of the published staging module.
install_kubernetes() {
  local components=(kube-apiserver kube-controller-manager kube-scheduler)
  local wanted="$KUBERNETES_VERSION" component current=true
  for component in "${components[@]}"; do
    is_current "$bin_dir/$component" "$wanted" || current=false
  done
  if $current; then
    return
  fi
  require_go
  log "building ${components[*]} $KUBERNETES_VERSION (about 6 minutes on 2 cores, once)"
  local started=$SECONDS
  local module_dir
  module_dir="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$module_dir" || ! -f "$module_dir/go.mod" ]]; then
    log "error: could not download the Go module k8s.io/kubernetes@$KUBERNETES_VERSION"
    exit 2
  fi
  local src="$tools_dir/src/kubernetes-$KUBERNETES_VERSION"
  rm -rf "$src"
  mkdir -p "$tools_dir/src"
  # The module cache is read-only; vendor/ alone is hundreds of MB and would be ignored anyway.
  cp -r "$module_dir" "$src"
  chmod -R u+w "$src"
  rm -rf "$src/vendor" "$src/go.work" "$src/go.work.sum"
  local edits=() staging
  while read -r staging; do
    edits+=("-dropreplace=$staging" "-require=$staging@$KUBERNETES_STAGING_VERSION")
  done < <(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*|\1|p' "$src/go.mod")
  if [[ ${#edits[@]} -eq 0 ]]; then
    log "error: no staging replace directives found in $src/go.mod; the recipe needs updating"
    exit 2
  fi
  (cd "$src" && GOWORK=off GOFLAGS=-mod=mod go mod edit "${edits[@]}")
  local minor="${KUBERNETES_VERSION#v1.}"
  minor="${minor%%.*}"
  # Without the version the server reports v0.0.0 and the chart's kubeVersion refuses it.
  local packages=()
  for component in "${components[@]}"; do
    packages+=("./cmd/$component")
  done
  (cd "$src" && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
    GOMAXPROCS="$GO_BUILD_JOBS" nice -n 19 go build -p "$GO_BUILD_JOBS" -trimpath -o "$bin_dir/" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor" \
    "${packages[@]}")
  for component in "${components[@]}"; do
    printf '%s' "$wanted" >"$bin_dir/$component.version"
  done
  rm -rf "$src"
  log "${components[*]} $KUBERNETES_VERSION built in $((SECONDS - started))s"
}

install_kwok() {
  local target="$bin_dir/kwok" stages="$tools_dir/share/kwok-stages"
  if is_current "$target" "$KWOK_VERSION" && [[ -f "$stages/.version" &&
    "$(cat "$stages/.version")" == "$KWOK_VERSION" ]]; then
    return
  fi
  require_go
  log "building kwok $KWOK_VERSION with go install"
  local started=$SECONDS
  GOBIN="$bin_dir" CGO_ENABLED=0 GOFLAGS="-buildvcs=false" GOMAXPROCS="$GO_BUILD_JOBS" \
    nice -n 19 go install -p "$GO_BUILD_JOBS" -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  printf '%s' "$KWOK_VERSION" >"$target.version"
  local module_dir
  module_dir="$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  rm -rf "$stages"
  mkdir -p "$stages"
  local stage
  for stage in node/fast node/heartbeat-with-lease pod/fast; do
    cp "$module_dir/kustomize/stage/$stage/"*.yaml "$stages/"
  done
  # kustomize's own files are not stages.
  rm -f "$stages/kustomization.yaml"
  printf '%s' "$KWOK_VERSION" >"$stages/.version"
  log "kwok $KWOK_VERSION installed in $((SECONDS - started))s"
}

# etcd is the one piece not built here: Debian packages it (3.4 serves this apiserver).
install_etcd() {
  if command -v etcd >/dev/null 2>&1; then
    return
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing etcd-server with apt-get"
    # The package's service scripts must not start an etcd of their own (policy-rc.d 101).
    local policy=/usr/sbin/policy-rc.d created_policy=false
    if [[ ! -e "$policy" ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
      created_policy=true
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
    if $created_policy; then
      rm -f "$policy"
    fi
    return
  fi
  log "error: etcd is missing; install Debian's etcd-server package (sudo apt-get install etcd-server)"
  exit 2
}

install_helm
install_python_tools
printf 'helm=%s\ncheckov=%s\nkubernetes-validate=%s\n' \
  "$bin_dir/helm" "$venv_dir/bin/checkov" "$venv_dir/bin/kubernetes-validate"
if $control_plane; then
  install_etcd
  install_kwok
  install_kubernetes
  printf 'etcd=%s\nkwok=%s\nkube-apiserver=%s\n' \
    "$(command -v etcd)" "$bin_dir/kwok" "$bin_dir/kube-apiserver"
fi
