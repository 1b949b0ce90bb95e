#!/usr/bin/env bash
# Generates the Go client's code from proto/ into clients/go/gen (committed), with the
# pinned buf, protoc-gen-go and protoc-gen-go-grpc of scripts/install_tools.sh and the
# template clients/go/buf.gen.yaml. `generate_go_client.sh DIR` writes under DIR instead
# (tests/integration/test_clients.py compares that with the committed gen/). PYTHON is
# the project's interpreter (default .venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOBIN_DIR="${MAGNETAR_TOOLS_BIN:-$ROOT/.magnetar/tools/bin}"
OUT="$(realpath -m "${1:-$ROOT/clients/go}")"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

bash "$ROOT/scripts/install_tools.sh"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# buf cannot fetch google/api here: it reads proto/ and its imports from an image.
"$PYTHON" "$ROOT/scripts/generate_proto.py" --image "$scratch/magnetar.binpb" >/dev/null
cd "$ROOT/clients/go"
rm -rf "$OUT/gen"
# The plugins are found on PATH: the pinned ones first.
PATH="$GOBIN_DIR:$PATH" "$GOBIN_DIR/buf" generate "$scratch/magnetar.binpb" \
  --template buf.gen.yaml --path magnetar/v1 --output "$OUT"
echo "generate_go_client: $OUT/gen" >&2
