#!/usr/bin/env bash
# Installs the non-Python tools the tests and benchmarks drive, gRPC clients written in Go
# (grpcurl; ghz, the load generator of `magnetar bench recommend`), into .magnetar/tools/bin.
# Idempotent: a binary of the pinned version already there is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOBIN_DIR="${MAGNETAR_TOOLS_BIN:-$ROOT/.magnetar/tools/bin}"
# name, module path, pinned version
TOOLS=(
  "grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.4"
  "ghz github.com/bojand/ghz/cmd/ghz v0.120.0"
)

missing=()
for tool in "${TOOLS[@]}"; do
  read -r name module version <<<"$tool"
  if [[ ! -x "$GOBIN_DIR/$name" || ! -f "$GOBIN_DIR/.$name-$version" ]]; then
    missing+=("$tool")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install_tools: error: the Go toolchain is missing; install Go (https://go.dev/doc/install) and retry" >&2
  exit 2
fi
mkdir -p "$GOBIN_DIR"
for tool in "${missing[@]}"; do
  read -r name module version <<<"$tool"
  # The Go module proxy builds the tool from source; GOFLAGS is cleared so a developer's
  # settings (e.g. -mod=vendor) cannot change what gets built.
  GOBIN="$GOBIN_DIR" GOFLAGS="-buildvcs=false" go install "$module@$version"
  rm -f "$GOBIN_DIR/.$name-"*
  touch "$GOBIN_DIR/.$name-$version"
  echo "install_tools: $name $version in $GOBIN_DIR"
done
