#!/usr/bin/env bash
# Installs the non-Python tools the tests drive (a gRPC client written in Go: grpcurl) into
# .magnetar/tools/bin. Idempotent: a binary of the pinned version already there is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOBIN_DIR="${MAGNETAR_TOOLS_BIN:-$ROOT/.magnetar/tools/bin}"
GRPCURL_VERSION="v1.9.4"
STAMP="$GOBIN_DIR/.grpcurl-$GRPCURL_VERSION"

if [[ -x "$GOBIN_DIR/grpcurl" && -f "$STAMP" ]]; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install_tools: error: the Go toolchain is missing; install Go (https://go.dev/doc/install) and retry" >&2
  exit 2
fi
mkdir -p "$GOBIN_DIR"
# The Go module proxy builds grpcurl from source; GOFLAGS is cleared so a developer's
# settings (e.g. -mod=vendor) cannot change what gets built.
GOBIN="$GOBIN_DIR" GOFLAGS="-buildvcs=false" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
rm -f "$GOBIN_DIR"/.grpcurl-*
touch "$STAMP"
echo "install_tools: grpcurl $GRPCURL_VERSION in $GOBIN_DIR"
