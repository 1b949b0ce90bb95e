"""The HTTP/JSON door against a real gateway: the same keys, validation and errors as gRPC.

The door runs on the gateway's event loop (`start_http_door`, as `serve` starts it) and is
called with httpx, as a browser's fetch would send it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.http_door import HttpDoor, start_http_door
from magnetar.settings import Settings
from tests.integration.gateway_harness import (
    IngestTenant,
    RunningGateway,
    read_all,
    set_allowed_origins,
)

pytestmark = pytest.mark.integration

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


ORIGINS_TTL_S = 0.2


@pytest.fixture(scope="module")
def door(gateway: RunningGateway) -> Iterator[httpx.Client]:
    origins = gateway.server.adapters.tenants  # as `serve` passes it
    running: HttpDoor = gateway.run(
        start_http_door(
            "127.0.0.1", 0, "127.0.0.1", gateway.port, origins, origins_ttl_s=ORIGINS_TTL_S
        )
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{running.port}", timeout=30) as client:
        yield client
    gateway.run(running.stop())


def allow_origins(settings: Settings, tenant_id: str, *origins: str) -> None:
    """Record the tenant's origins, then wait out the door's cache."""
    set_allowed_origins(settings, tenant_id, *origins)
    time.sleep(2 * ORIGINS_TTL_S)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def event(user: str, item: str, **fields: Any) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "eventId": uuid.uuid4().hex,
        "userId": user,
        "type": "EVENT_TYPE_VIEW",
        "itemId": item,
        "occurredAt": now,
        **fields,
    }


def details(body: dict[str, Any], type_url: str) -> list[dict[str, Any]]:
    return [d for d in body["error"]["details"] if d["@type"] == type_url]


def test_ingest_in_proto3_json_lands_on_the_raw_topic(
    door: httpx.Client, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    batch = [event("web", "sku-1"), event("web", "sku-2"), {"eventId": "bad one", "userId": "web"}]
    reply = door.post(
        "/v1/events:ingest", json={"events": batch}, headers=bearer(ingest_tenant.ingest_key)
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["acceptedCount"] == 2
    assert body["rejectedEvents"][0]["index"] == 2
    assert body["rejectedEvents"][0]["reason"] == "REJECTION_REASON_INVALID_FIELD"
    assert body["acceptedAt"].endswith("Z")
    messages = read_all(settings, ingest_tenant.raw_topic, expect=2)
    assert [m.partition_key() for m in messages] == ["web", "web"]


def test_recommend_similar_and_trending_answer_json(
    door: httpx.Client, ingest_tenant: IngestTenant
) -> None:
    read = bearer(ingest_tenant.read_key)
    recommended = door.post(
        "/v1/recommendations:recommend", json={"userId": "u", "k": 3}, headers=read
    )
    assert (recommended.status_code, recommended.json()) == (200, {"coldStart": True})
    trending = door.post(
        "/v1/items:trending", json={"window": "TRENDING_WINDOW_DAY", "k": 3}, headers=read
    )
    assert (trending.status_code, trending.json()) == (200, {})
    missing = door.post("/v1/items:similar", json={"itemId": "nothing", "k": 3}, headers=read)
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_an_invalid_batch_answers_the_grpc_status_as_json_with_http_400(
    door: httpx.Client, ingest_tenant: IngestTenant
) -> None:
    batch = [event("web", "sku-1"), {**event("web", "sku-2"), "occurredAt": None}]
    reply = door.post(
        "/v1/events:ingest",
        json={"events": batch, "allOrNothing": True},
        headers=bearer(ingest_tenant.ingest_key),
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert details(reply.json(), ERROR_INFO)[0]["reason"] == "EVENTS_INVALID"
    violations = details(reply.json(), BAD_REQUEST)[0]["fieldViolations"]
    assert [v["field"] for v in violations] == ["events[1].occurred_at"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHENTICATED"),
        ({"Authorization": "Bearer mgk_not_a_key"}, 401, "UNAUTHENTICATED"),
        ("read", 403, "PERMISSION_DENIED"),
    ],
)
def test_keys_are_the_grpc_keys(
    door: httpx.Client,
    ingest_tenant: IngestTenant,
    headers: dict[str, str] | str,
    status: int,
    code: str,
) -> None:
    if headers == "read":
        headers = bearer(ingest_tenant.read_key)  # a READ key cannot ingest
    assert isinstance(headers, dict)
    reply = door.post("/v1/events:ingest", json={"events": [event("w", "i")]}, headers=headers)
    assert reply.status_code == status
    assert reply.json()["error"]["status"] == code
    assert details(reply.json(), ERROR_INFO)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "INVALID_JSON"),
        (b'{"events": [], "surprise": 1}', "INVALID_JSON"),  # unknown field
        (b'{"events": "many"}', "INVALID_JSON"),  # wrong type
        (b'{"allOrNothing": "yes"}', "INVALID_JSON"),
        (b"\xff\xfe", "INVALID_JSON"),
        (b"[" * 100_000, "INVALID_JSON"),  # nesting
    ],
)
def test_bodies_that_are_not_the_request_message_are_400_before_any_call(
    door: httpx.Client, ingest_tenant: IngestTenant, body: bytes, reason: str
) -> None:
    reply = door.post(
        "/v1/events:ingest",
        content=body,
        headers={**bearer(ingest_tenant.ingest_key), "Content-Type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert details(reply.json(), ERROR_INFO)[0]["reason"] == reason


def test_oversize_bodies_other_media_types_methods_and_paths_are_json_errors(
    door: httpx.Client,
) -> None:
    big = door.post(
        "/v1/recommendations:recommend",
        content=b" " * (4 * 256 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert details(big.json(), ERROR_INFO)[0]["reason"] == "REQUEST_TOO_LARGE"
    form = door.post("/v1/events:ingest", content=b"a=b", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    assert details(form.json(), ERROR_INFO)[0]["reason"] == "UNSUPPORTED_MEDIA_TYPE"
    get = door.get("/v1/events:ingest")
    assert get.status_code == 405
    assert get.json()["error"]["status"] == "UNIMPLEMENTED"
    nowhere = door.post("/v1/nothing", json={})
    assert nowhere.status_code == 404
    assert details(nowhere.json(), ERROR_INFO)[0]["reason"] == "NO_SUCH_ROUTE"


SHOP = "https://shop.example"


def test_a_preflight_is_answered_for_any_origin_without_a_key(door: httpx.Client) -> None:
    reply = door.options(
        "/v1/events:ingest",
        headers={
            "Origin": "https://anyone.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == "https://anyone.example"
    assert reply.headers["access-control-allow-methods"] == "POST"
    assert set(reply.headers["access-control-allow-headers"].split(", ")) == {
        "authorization",
        "content-type",
    }
    assert reply.headers["vary"] == "Origin"


def test_only_the_tenants_allowed_origins_reach_the_call(
    door: httpx.Client, ingest_tenant: IngestTenant, settings: Settings
) -> None:
    batch = {"events": [event("web", "sku-1")]}
    ingest = {**bearer(ingest_tenant.ingest_key), "Origin": SHOP}
    refused = door.post("/v1/events:ingest", json=batch, headers=ingest)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
    info = details(refused.json(), ERROR_INFO)[0]
    assert info["reason"] == "ORIGIN_NOT_ALLOWED"
    assert info["metadata"] == {"origin": SHOP, "tenant_id": ingest_tenant.tenant_id}
    # The page can read why: the refusal carries the CORS header for its origin.
    assert refused.headers["access-control-allow-origin"] == SHOP

    allow_origins(settings, ingest_tenant.tenant_id, SHOP)
    accepted = door.post("/v1/events:ingest", json=batch, headers=ingest)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["acceptedCount"] == 1
    assert accepted.headers["access-control-allow-origin"] == SHOP
    other = door.post(
        "/v1/events:ingest", json=batch, headers={**ingest, "Origin": "https://evil.example"}
    )
    assert details(other.json(), ERROR_INFO)[0]["reason"] == "ORIGIN_NOT_ALLOWED"
    # Only the refused calls had no effect: one event on the topic.
    assert len(read_all(settings, ingest_tenant.raw_topic, expect=1)) == 1


def test_same_origin_and_originless_requests_need_no_allowed_origin(
    door: httpx.Client, ingest_tenant: IngestTenant
) -> None:
    read = bearer(ingest_tenant.read_key)
    body = {"userId": "u", "k": 1}
    own = door.post(
        "/v1/recommendations:recommend",
        json=body,
        headers={**read, "Origin": str(door.base_url).rstrip("/")},
    )
    assert own.status_code == 200, own.text
    assert "access-control-allow-origin" not in own.headers
    plain = door.post("/v1/recommendations:recommend", json=body, headers=read)
    assert plain.status_code == 200


def test_cross_origin_calls_without_a_tenant_key_fail_with_the_grpc_reason(
    door: httpx.Client, admin_key: str
) -> None:
    # The platform's admin key is the admin plane's: the public gateway does not know it.
    for headers, status in [({}, 401), (bearer("not-a-key"), 401), (bearer(admin_key), 401)]:
        reply = door.post(
            "/v1/recommendations:recommend",
            json={"userId": "u"},
            headers={**headers, "Origin": SHOP},
        )
        assert reply.status_code == status, reply.text
        assert details(reply.json(), ERROR_INFO)[0]["reason"] != "ORIGIN_NOT_ALLOWED"
        assert reply.headers["access-control-allow-origin"] == SHOP
