#!/usr/bin/env bash
# Generates the Go client's code from proto/ into clients/go/gen (committed), with the
# pinned buf, protoc-gen-go and protoc-gen-go-grpc of scripts/install_tools.sh and the
# template clients/go/buf.gen.yaml. `generate_go_client.sh DIR` writes under DIR instead
# (tests/integration/test_clients.py compares that with the committed gen/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOBIN_DIR="${MAGNETAR_TOOLS_BIN:-$ROOT/.magnetar/tools/bin}"
OUT="$(realpath -m "${1:-$ROOT/clients/go}")"

bash "$ROOT/scripts/install_tools.sh"
cd "$ROOT/clients/go"
rm -rf "$OUT/gen"
# The plugins are found on PATH: the pinned ones first.
PATH="$GOBIN_DIR:$PATH" "$GOBIN_DIR/buf" generate --template buf.gen.yaml --output "$OUT"
echo "generate_go_client: $OUT/gen" >&2
