"""Load from `ghz` (a gRPC load generator written in Go) for `magnetar bench recommend`.

A Python client on the same two cores spends more CPU per call than the server it measures;
ghz does not. It is installed by `scripts/install_tools.sh` (pinned) and run open loop:
`--async` starts each call on schedule (`--rps`) whatever the calls before it do, over many
connections. It learns the messages from a protoset written here from the generated
descriptors, plus the benchmark's empty service (`magnetar.bench.EmptyService`, a method
taking a `RecommendRequest` and answering a `RecommendResponse`), which no .proto declares.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from magnetar.v1 import personalization_service_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
EMPTY_PACKAGE = "magnetar.bench"


def ghz_binary() -> Path:
    """The pinned ghz, built on first use (idempotent)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "install_tools.sh")], check=True, timeout=900)
    return ROOT / ".magnetar" / "tools" / "bin" / "ghz"


def _with_dependencies(file: FileDescriptor, seen: dict[str, FileDescriptor]) -> None:
    for dependency in file.dependencies:
        _with_dependencies(dependency, seen)
    seen.setdefault(file.name, file)


def write_protoset(path: Path) -> Path:
    """Every file `RecommendRequest` needs (dependencies first) and the empty service's."""
    files: dict[str, FileDescriptor] = {}
    _with_dependencies(pb.DESCRIPTOR, files)
    protoset = descriptor_pb2.FileDescriptorSet()
    for file in files.values():
        file.CopyToProto(protoset.file.add())
    empty = protoset.file.add(
        name="magnetar/bench/empty.proto",
        package=EMPTY_PACKAGE,
        dependency=[pb.DESCRIPTOR.name],
        syntax="proto3",
    )
    empty.service.add(name="EmptyService").method.add(
        name="Recommend",
        input_type=".magnetar.v1.RecommendRequest",
        output_type=".magnetar.v1.RecommendResponse",
    )
    path.write_bytes(protoset.SerializeToString())
    return path


@dataclass(frozen=True)
class GhzResult:
    served: int
    # Calls answered with a status other than OK, by status name ("Unavailable": 2).
    error_codes: dict[str, int]
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def errors(self) -> int:
        return sum(self.error_codes.values())

    @property
    def achieved(self) -> float:
        return self.served / self.seconds if self.seconds else 0.0


# ghz's own teardown: it closes its connections when `--duration` ends, and a call still in
# flight on one fails with this (as UNAVAILABLE) although the server answered nothing wrong.
CLOSED_BY_GHZ = "use of closed network connection"


def parse_report(report: dict[str, object], seconds: float) -> GhzResult:
    """ghz's JSON report: latencies in ns; every status but OK is an error, except what ghz
    does itself at the end of a run: Canceled (the calls still in flight when `--duration`
    ends, one or two a run) and UNAVAILABLE with "use of closed network connection" (a call
    on a connection ghz closed then); the server answered neither with an error."""
    codes = report.get("statusCodeDistribution") or {}
    assert isinstance(codes, dict)
    messages = report.get("errorDistribution") or {}
    assert isinstance(messages, dict)
    teardown = sum(int(n) for message, n in messages.items() if CLOSED_BY_GHZ in message)
    ok = int(codes.get("OK", 0))
    errors = {code: int(n) for code, n in codes.items() if code not in ("OK", "Canceled")}
    if teardown and "Unavailable" in errors:
        errors["Unavailable"] -= min(teardown, errors["Unavailable"])
    errors = {code: n for code, n in errors.items() if n}
    percentiles = {
        int(entry["percentage"]): float(entry["latency"]) / 1e6
        for entry in report.get("latencyDistribution") or []  # type: ignore[attr-defined]
    }
    return GhzResult(ok, errors, seconds, percentiles.get(50, 0.0), percentiles.get(99, 0.0))


def command(
    binary: Path,
    protoset: Path,
    address: str,
    method: str,
    data_file: Path,
    *,
    key: str,
    rate: float,
    seconds: float,
    connections: int,
    workers: int,
) -> list[str]:
    """`method` is `package.Service/Method`; `data_file` holds a JSON array of requests,
    sent in turn (ghz round-robins an array over the calls of a unary method)."""
    return [
        str(binary),
        "--insecure",
        "--protoset",
        str(protoset),
        "--call",
        method,
        "--data-file",
        str(data_file),
        "--metadata",
        json.dumps({"authorization": f"Bearer {key}"}),
        "--async",
        "--rps",
        str(int(rate)),
        "--duration",
        f"{seconds}s",
        "--connections",
        str(connections),
        "--concurrency",
        str(workers),
        "--timeout",
        "5s",
        "--format",
        "json",
        address,
    ]
