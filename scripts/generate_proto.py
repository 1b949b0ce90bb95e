"""Compile `proto/magnetar/v1/*.proto` into `magnetar/v1/` (messages, gRPC stubs, .pyi).

Run as `make proto` (or `python scripts/generate_proto.py [--out DIR]`). The output is
committed; `scripts/check_generated.py` regenerates into a temporary folder and fails when
the committed files differ. Generation is pinned (grpcio-tools, mypy-protobuf in
pyproject's dev extra) so that two machines produce identical bytes.

Imports in the output are absolute (`from magnetar.v1 import events_pb2`), because the
proto files are compiled relative to `proto/` and their directory is their package.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("magnetar") / "v1"
INIT_TEXT = '''"""Generated from proto/magnetar/v1 by scripts/generate_proto.py. Do not edit."""
'''


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    return sorted((proto_root / PACKAGE_DIR).glob("*.proto"))


def import_paths() -> list[Path]:
    """Where the protos' imports come from: protobuf's own files (`google/protobuf`, shipped
    with grpcio-tools) and `google/api` (the HTTP annotations, shipped as .proto files with
    googleapis-common-protos, whose generated modules the Python code imports at run time).
    """
    from google.api import annotations_pb2

    return [
        Path(protoc.__file__).parent / "_proto",
        Path(annotations_pb2.__file__).resolve().parents[2],
    ]


def build_image(out: Path, proto_root: Path = PROTO_ROOT) -> Path:
    """A FileDescriptorSet of `proto_root`'s files and their imports, with source info: the
    input buf lints, compares and generates the Go client from (buf cannot fetch
    `google/api` itself here; it reads it from the image)."""
    files = proto_files(proto_root)
    if not files:
        raise SystemExit(f"no .proto files under {proto_root / PACKAGE_DIR}")
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        *(f"--proto_path={path}" for path in import_paths()),
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *(str(f.relative_to(proto_root)) for f in files),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")
    return out


def _plugin(name: str) -> str:
    """The plugin next to this interpreter, so the virtualenv's pinned version is used."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise SystemExit(f"{name} not found: run `pip install -e '.[dev]'` (mypy-protobuf)")
        path = Path(found)
    return str(path)


def generate(out_root: Path) -> list[Path]:
    """Write the generated package under `out_root/magnetar/v1`; return the files written."""
    files = proto_files()
    if not files:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            *(f"--proto_path={path}" for path in import_paths()),
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={work}",
            "--mypy_opt=quiet",
            "--mypy_grpc_opt=quiet",
            f"--mypy_out={work}",
            f"--grpc_python_out={work}",
            f"--mypy_grpc_out={work}",
            *(str(f.relative_to(PROTO_ROOT)) for f in files),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed (see the messages above)")
        generated = work / PACKAGE_DIR
        (generated / "__init__.py").write_text(INIT_TEXT)
        target = out_root / PACKAGE_DIR
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(generated, target)
    return sorted(p for p in target.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write magnetar/v1 under")
    parser.add_argument(
        "--image", type=Path, help="write a FileDescriptorSet (buf's input) here instead"
    )
    args = parser.parse_args(argv)
    if args.image is not None:
        print(f"wrote {build_image(args.image)}")
        return 0
    written = generate(args.out)
    print(f"generated {len(written)} files in {args.out / PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
