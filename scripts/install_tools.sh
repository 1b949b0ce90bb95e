#!/usr/bin/env bash
# Installs the non-Python tools the tests and checks drive into .magnetar/tools/bin, each
# built with `go install` at a pinned version:
#   grpcurl             a gRPC client written in Go (tests/integration/test_grpcurl.py)
#   ghz                 the gRPC load generator of `magnetar bench recommend`
#   buf                 lints proto/ and checks it for breaking changes (scripts/check_contract.py)
#   protoc-gen-go       Go messages for the Go client (clients/go, docs/clients.md)
#   protoc-gen-go-grpc  Go gRPC stubs for the Go client
# Idempotent: a binary whose stamp names the pinned version is kept, so the test suite can
# call this on every run and pay each build once per machine. Concurrent callers serialise
# on a lock file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOBIN_DIR="${MAGNETAR_TOOLS_BIN:-$ROOT/.magnetar/tools/bin}"
GRPCURL_VERSION="v1.9.4"
GHZ_VERSION="v0.120.0"
BUF_VERSION="v1.75.0"
PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"

mkdir -p "$GOBIN_DIR"
exec 9>"$GOBIN_DIR/.install.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

# go_tool NAME PACKAGE VERSION: `go install PACKAGE@VERSION` unless NAME is there at VERSION.
go_tool() {
  local name="$1" package="$2" version="$3"
  local stamp="$GOBIN_DIR/.$name-$version"
  if [[ -x "$GOBIN_DIR/$name" && -f "$stamp" ]]; then
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "install_tools: error: the Go toolchain is missing; install Go (https://go.dev/doc/install) and retry" >&2
    exit 2
  fi
  # The Go module proxy builds the tool from source; GOFLAGS is reset so a developer's
  # settings (e.g. -mod=vendor) cannot change what gets built.
  GOBIN="$GOBIN_DIR" GOFLAGS="-buildvcs=false" go install "$package@$version"
  rm -f "$GOBIN_DIR/.$name"-*
  touch "$stamp"
  echo "install_tools: $name $version in $GOBIN_DIR" >&2
}

go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"
go_tool ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION"
go_tool buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
