"""A client not written in Python: grpcurl (Go) ingests and checks health via reflection.

grpcurl knows nothing of our protos: it learns the services from server reflection, and
turns JSON into `magnetar.v1.IngestRequest` with them, as any third-party client would.
`scripts/install_tools.sh` builds it with `go install` (idempotent).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from magnetar.settings import Settings
from tests.integration.gateway_harness import (
    IngestTenant,
    RunningGateway,
    read_all,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grpcurl() -> Path:
    subprocess.run(["bash", str(ROOT / "scripts" / "install_tools.sh")], check=True, timeout=900)
    return ROOT / ".magnetar" / "tools" / "bin" / "grpcurl"


def run(grpcurl: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(grpcurl), "-plaintext", "-max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_reflection_lists_the_services(grpcurl: Path, gateway: RunningGateway) -> None:
    listed = run(grpcurl, gateway.address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"magnetar.v1.EventService", "grpc.health.v1.Health"} <= services
    described = run(grpcurl, gateway.address, "describe", "magnetar.v1.Event")
    assert described.returncode == 0, described.stderr
    assert "occurred_at" in described.stdout


@pytest.mark.parametrize("service", ["", "magnetar.v1.EventService"])
def test_health_check_through_reflection(
    grpcurl: Path, gateway: RunningGateway, service: str
) -> None:
    checked = run(
        grpcurl,
        "-d",
        json.dumps({"service": service}),
        gateway.address,
        "grpc.health.v1.Health/Check",
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {"status": "SERVING"}


def test_ingest_from_grpcurl_lands_on_the_raw_topic(
    grpcurl: Path, gateway: RunningGateway, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    events = [
        {
            "eventId": uuid.uuid4().hex,
            "userId": "go-user",
            "type": "EVENT_TYPE_PURCHASE",
            "itemId": f"sku-{n}",
            "occurredAt": now,
            "value": 9.5,
            "quantity": 2,
            "attributes": {"order_id": "o-1"},
            "context": {"userAgent": "grpcurl", "locale": "en-GB"},
        }
        for n in range(2)
    ]
    events.append({"eventId": "bad one", "userId": "go-user", "type": "EVENT_TYPE_VIEW"})
    ingested = run(
        grpcurl,
        "-H",
        f"authorization: Bearer {ingest_tenant.ingest_key}",
        "-d",
        json.dumps({"events": events}),
        gateway.address,
        "magnetar.v1.EventService/Ingest",
    )
    assert ingested.returncode == 0, ingested.stderr
    reply = json.loads(ingested.stdout)  # grpcurl prints proto field names
    assert reply["accepted_count"] == 2
    assert reply["rejected_events"][0]["index"] == 2
    assert reply["rejected_events"][0]["reason"] == "REJECTION_REASON_INVALID_FIELD"
    messages = read_all(settings, ingest_tenant.raw_topic, expect=2)
    assert [m.partition_key() for m in messages] == ["go-user", "go-user"]


def test_grpcurl_sees_unauthenticated_without_a_key(grpcurl: Path, gateway: RunningGateway) -> None:
    refused = run(
        grpcurl, "-d", '{"events": []}', gateway.address, "magnetar.v1.EventService/Ingest"
    )
    assert refused.returncode != 0
    assert "Code: Unauthenticated" in refused.stderr
