"""Every RPC of a real in-process gateway, fuzzed: no UNKNOWN or INTERNAL from our code.

For each method of each service the gateway serves (from the descriptors, not a hand-kept
list), hypothesis sends well-typed requests — every field drawn from its type: any text,
any number, enum numbers without names, nested messages, maps — and raw random bytes, under
each kind of credential: the tenant's key (ingest + read), the platform admin key, a key
that does not exist, none. The answer must be OK or one of the statuses our contract
documents; UNKNOWN and INTERNAL mean an exception escaped our code.

Bytes that do not parse as the request message are answered INVALID_ARGUMENT by the error
mapping (grpc alone would answer UNKNOWN, before any interceptor).

The HTTP/JSON door is fuzzed the same way, on its routes: the same well-typed requests as
proto3 JSON must get the same code and ErrorInfo reason as over gRPC; random JSON, unknown
fields, wrong types, bytes, oversize bodies, missing, malformed and unknown keys and
disallowed origins must get a JSON `google.rpc.Status` with an HTTP status below 500 (503
and 504 aside, which say the stack is away) — never a 500.

Side effects stay inside the test's own tenant: TenantService methods that change tenants
are called with the admin key only with requests that name no existing tenant, and
CreateTenant only with a tenant id that cannot be created (its validation is what is fuzzed).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor as d
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.http_door import JSON_EXPANSION, HttpDoor, Route, routes, start_http_door
from gateway.request_sizes import max_request_bytes
from gateway.wiring import GatewayOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.api_keys import Scope, mint_key
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from magnetar.v1 import (
    catalog_service_pb2,
    event_service_pb2,
    personalization_service_pb2,
    tenant_service_pb2,
    user_service_pb2,
)
from tenants.pulsar_setup import provision_pulsar
from tests.faults.harness import remove_tenant
from tests.integration.gateway_harness import (
    RunningAdmin,
    RunningGateway,
    add_tenant_row,
    remove_tenant_row,
    set_allowed_origins,
)

pytestmark = pytest.mark.integration

SERVICES = [
    module.DESCRIPTOR.services_by_name[name]
    for module, name in (
        (event_service_pb2, "EventService"),
        (personalization_service_pb2, "PersonalizationService"),
        (catalog_service_pb2, "CatalogService"),
        (user_service_pb2, "UserService"),
        (tenant_service_pb2, "TenantService"),
    )
]
METHODS = [method for service in SERVICES for method in service.methods]
# Methods that change tenants: with the admin key, only requests naming no existing tenant.
TENANT_CHANGES = {"CreateTenant", "UpdateTenant", "DeleteTenant", "CreateApiKey", "RevokeApiKey"}
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
CALLERS = ("tenant", "admin", "unknown", "none")
# What each method answered (to check the fuzzing got past authentication).
SEEN: dict[str, Counter[str]] = defaultdict(Counter)

# --- well-typed messages from descriptors -------------------------------------------------

_INTS = {
    d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_TEXT = st.one_of(
    st.just(""),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12),
    st.text(max_size=30),
    st.text(min_size=200, max_size=300),
)


def _scalar(field: d.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INTS:
        low, high = _INTS[kind]
        return st.one_of(
            st.integers(-3, 100).filter(lambda v: low <= v <= high), st.integers(low, high)
        )
    if kind in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        wide = st.floats(allow_nan=True, allow_infinity=True, width=64 if kind == 1 else 32)
        return st.one_of(st.floats(0, 10, width=32), wide)
    if kind == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == d.FieldDescriptor.TYPE_STRING:
        return _TEXT
    if kind == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == d.FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    assert field.message_type is not None
    return messages(field.message_type, depth + 1)


def _repeated(field: d.FieldDescriptor) -> bool:
    # protobuf 7 has `is_repeated` (and no `label`); the type stubs know neither.
    return bool(getattr(field, "is_repeated", False))


def messages(descriptor: d.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of `descriptor`'s type, fields drawn from their types (depth-bounded)."""
    cls = GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                entries = draw(
                    st.dictionaries(
                        _scalar(key_field, depth), _scalar(value_field, depth), max_size=4
                    )
                )
                target = getattr(message, field.name)
                for key, value in entries.items():
                    if value_field.message_type is not None:
                        target[key].CopyFrom(value)
                    else:
                        target[key] = value
            elif _repeated(field):
                values = draw(st.lists(_scalar(field, depth), max_size=4))
                target = getattr(message, field.name)
                if field.message_type is not None:
                    for value in values:
                        target.add().CopyFrom(value)
                else:
                    target.extend(values)
            elif field.message_type is not None:
                getattr(message, field.name).CopyFrom(draw(_scalar(field, depth)))
            else:
                setattr(message, field.name, draw(_scalar(field, depth)))
        return message

    return build()


# --- the gateway --------------------------------------------------------------------------


class Target:
    def __init__(
        self,
        gateway: RunningGateway,
        admin: RunningAdmin,
        tenant: str,
        tenant_key: str,
        admin_key: str,
    ):
        self.gateway = gateway
        self.channel = grpc.insecure_channel(gateway.address)
        # TenantService is served by the admin plane, on its own listener.
        self.admin_channel = grpc.insecure_channel(admin.address)
        self.tenant = tenant
        self.credentials = {
            "tenant": tenant_key,
            "admin": admin_key,
            "unknown": "mk_" + secrets.token_urlsafe(24),
            "none": "",
        }

    def call(self, method: d.MethodDescriptor, payloads: list[bytes], who: str) -> grpc.StatusCode:
        path = f"/{method.containing_service.full_name}/{method.name}"
        key = self.credentials[who]
        metadata = [("authorization", f"Bearer {key}")] if key else []
        identity = (lambda b: b, lambda b: b)
        admin_plane = method.containing_service.name == "TenantService"
        channel = self.admin_channel if admin_plane else self.channel
        try:
            if method.client_streaming:
                stream = channel.stream_stream(path, *identity)
                for _ in stream(iter(payloads), metadata=metadata, timeout=30):
                    pass
            else:
                call = channel.unary_unary(path, *identity)
                call(payloads[0], metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def target(settings: Settings, pulsar_admin: PulsarAdmin) -> Iterator[Target]:
    tenant = f"fzgw-{uuid.uuid4().hex[:8]}"
    provision_pulsar(pulsar_admin, tenant)
    add_tenant_row(settings, tenant)
    set_allowed_origins(settings, tenant, ALLOWED_ORIGIN)
    engine = make_engine(settings.database_url, pool_size=1)
    key, _ = ApiKeyStore(make_sessionmaker(engine)).create(
        tenant, [Scope.INGEST, Scope.READ, Scope.MANAGE], "gateway fuzz"
    )
    engine.dispose()
    admin_key = secrets.token_urlsafe(32)
    # Every call of the fuzzing comes from one address, and most carry no valid key: the
    # per-address limit of failed authentications (tested in tests/unit/gateway) would turn
    # them into RESOURCE_EXHAUSTED at random points and hide what is fuzzed here.
    unlimited = GatewayOptions(auth_failures_burst=10**9, auth_failures_per_second=10**9)
    gateway = RunningGateway(settings.merged({"grpc_port": 0}), unlimited)
    admin = RunningAdmin(settings.merged({"admin_api_key": admin_key}))
    running = Target(gateway, admin, tenant, key.secret, admin_key)
    try:
        yield running
    finally:
        running.channel.close()
        running.admin_channel.close()
        gateway.stop()
        admin.stop()
        remove_tenant_row(settings, tenant)
        remove_tenant(pulsar_admin, tenant)


def _harmless(method: d.MethodDescriptor, message: Message, who: str) -> Message:
    """With the admin key, a request that changes tenants names no tenant that exists, and
    CreateTenant names one that cannot be created (upper case is not a valid slug): fuzzing
    must not onboard real tenants on the shared stack."""
    if who != "admin" or method.name not in TENANT_CHANGES:
        return message
    absent = f"zz-fuzz-absent-{uuid.uuid4().hex[:8]}"
    if method.name == "CreateTenant":
        message.tenant_id = "ZZ-FUZZ-" + message.tenant_id[:8]  # type: ignore[attr-defined]
    elif method.name == "UpdateTenant":
        message.tenant.tenant_id = absent  # type: ignore[attr-defined]
    else:
        message.tenant_id = absent  # type: ignore[attr-defined]
    return message


def owner(method: d.MethodDescriptor) -> str:
    """Who may call `method`: the platform's admin key for TenantService, else the tenant's."""
    return "admin" if method.containing_service.name == "TenantService" else "tenant"


def _without_known_open_bug(method: d.MethodDescriptor, message: Message, who: str) -> Message:
    """TenantService answers INTERNAL for a tenant id with a NUL in it (PostgreSQL refuses the
    query): open, held by `test_a_nul_in_a_tenant_id_...` below, kept out of the property."""
    if who == "admin" and "tenant_id" in message.DESCRIPTOR.fields_by_name:
        message.tenant_id = message.tenant_id.replace("\x00", "")  # type: ignore[attr-defined]
    return message


def _prepared(method: d.MethodDescriptor, message: Message, who: str) -> Message:
    return _without_known_open_bug(method, _harmless(method, message, who), who)


def method_id(method: d.MethodDescriptor) -> str:
    return f"{method.containing_service.name}.{method.name}"


@pytest.mark.parametrize("method", METHODS, ids=method_id)
def test_well_typed_requests_never_end_in_unknown_or_internal(
    target: Target, method: d.MethodDescriptor
) -> None:
    requests_strategy = st.lists(messages(method.input_type), min_size=1, max_size=3)

    def check(requests: list[Message], who: str) -> None:
        requests = [_prepared(method, r, who) for r in requests]
        code = target.call(method, [r.SerializeToString() for r in requests], who)
        SEEN[method.name][code.name] += 1
        assert code not in FORBIDDEN, (code, who, requests[:1])

    # Mostly as the caller the method is for, so that requests reach our code; then as the
    # others (wrong key, unknown key, no key).
    FUZZ(given(requests_strategy, st.just(owner(method)))(check))()
    others = [c for c in CALLERS if c != owner(method)]
    FEW(given(requests_strategy, st.sampled_from(others))(check))()
    # Guards the fuzzing itself: requests got past authentication into our code.
    assert set(SEEN[method.name]) - {"UNAUTHENTICATED", "PERMISSION_DENIED"}, SEEN[method.name]


@pytest.mark.parametrize("method", METHODS, ids=method_id)
def test_random_bytes_never_end_in_unknown_or_internal(
    target: Target, method: d.MethodDescriptor
) -> None:
    request_class = GetMessageClass(method.input_type)

    @FUZZ
    @given(st.binary(max_size=256), st.sampled_from([owner(method), owner(method), "none"]))
    def check(payload: bytes, who: str) -> None:
        try:
            request = request_class.FromString(payload)
            payload = _prepared(method, request, who).SerializeToString()
        except DecodeError:
            pass  # sent as it is: the gateway must refuse it as INVALID_ARGUMENT
        code = target.call(method, [payload], who)
        assert code not in FORBIDDEN, (code, who, payload)

    check()


@pytest.mark.parametrize("name", ["GetTenant", "ListApiKeys"])
def test_a_nul_in_a_tenant_id_is_invalid_argument_not_internal(target: Target, name: str) -> None:
    method = next(m for m in METHODS if m.name == name)
    # Both requests have a tenant_id; the generic class's type cannot say so.
    request_class: Any = GetMessageClass(method.input_type)
    request = request_class(tenant_id="acme\x00")
    code = target.call(method, [request.SerializeToString()], "admin")
    assert code == grpc.StatusCode.INVALID_ARGUMENT, code


def test_undecodable_requests_are_answered_with_invalid_argument(target: Target) -> None:
    # A truncated varint: no request message of ours parses it.
    codes = {m.name: target.call(m, [b"\xff\xff\xff"], "tenant") for m in METHODS}
    wrong = {name: code for name, code in codes.items() if code != grpc.StatusCode.INVALID_ARGUMENT}
    assert not wrong, wrong


# --- the HTTP/JSON door -------------------------------------------------------------------

ALLOWED_ORIGIN = "https://allowed.example"
ORIGINS = (None, ALLOWED_ORIGIN, "https://elsewhere.example")
DOOR_ROUTES = routes()
# Callers of the door: those of gRPC, plus a well-formed key of the fuzz tenant that was never
# stored and one that names no tenant at all.
DOOR_CALLERS = (*CALLERS, "unstored", "malformed")
# 503 and 504 say the stack is away (UNAVAILABLE, DEADLINE_EXCEEDED), not a bug of ours.
AWAY = {503, 504}


class Door:
    def __init__(self, target: Target, client: httpx.Client) -> None:
        self.target = target
        self.client = client
        self.credentials = {
            **target.credentials,
            "unstored": mint_key(target.tenant).secret,
            "malformed": "mgk.not.a.key",
        }

    def post(
        self, route: Route, body: bytes, who: str, origin: str | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if key := self.credentials[who]:
            headers["Authorization"] = f"Bearer {key}"
        if origin is not None:
            headers["Origin"] = origin
        return self.client.post(route.path, content=body, headers=headers)


@pytest.fixture(scope="module")
def door(target: Target) -> Iterator[Door]:
    gateway = target.gateway
    origins = gateway.server.adapters.tenants
    running: HttpDoor = gateway.run(
        start_http_door("127.0.0.1", 0, "127.0.0.1", gateway.port, origins)
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{running.port}", timeout=30) as client:
        yield Door(target, client)
    gateway.run(running.stop())


def reason_of(status: status_pb2.Status) -> str | None:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return None


def grpc_outcome(target: Target, route: Route, message: Message, who: str) -> tuple[str, Any]:
    """(code name, ErrorInfo reason) of `message` sent over gRPC."""
    key = target.credentials.get(who, "")
    metadata = [("authorization", f"Bearer {key}")] if key else []
    call = target.channel.unary_unary(
        route.grpc_method, lambda m: m.SerializeToString(), lambda b: b
    )
    try:
        call(message, metadata=metadata, timeout=30)
    except grpc.RpcError as error:
        for name, value in error.trailing_metadata() or ():
            if name == "grpc-status-details-bin":
                return error.code().name, reason_of(status_pb2.Status.FromString(value))
        return error.code().name, None
    return "OK", None


def door_outcome(reply: httpx.Response) -> tuple[str, Any]:
    """(code name, ErrorInfo reason) of a door answer, checking it is never a bare 500."""
    assert reply.status_code < 500 or reply.status_code in AWAY, (reply.status_code, reply.text)
    body = reply.json()
    if reply.status_code == 200:
        return "OK", None
    error = body["error"]
    assert error["code"] == reply.status_code, body
    reasons = [x["reason"] for x in error["details"] if x["@type"].endswith("ErrorInfo")]
    return error["status"], (reasons[0] if reasons else None)


def route_id(route: Route) -> str:
    return route.path


def route_method(route: Route) -> d.MethodDescriptor:
    found: d.MethodDescriptor = next(
        m for m in METHODS if f"/{m.containing_service.full_name}/{m.name}" == route.grpc_method
    )
    return found


@pytest.mark.parametrize("route", DOOR_ROUTES, ids=route_id)
def test_the_door_answers_as_grpc_does_for_the_same_request(door: Door, route: Route) -> None:
    method = route_method(route)

    @FUZZ
    @given(messages(method.input_type), st.sampled_from(CALLERS))
    def check(message: Message, who: str) -> None:
        message = _prepared(method, message, who)
        try:
            body = json_format.MessageToJson(message).encode()
        except json_format.SerializeToJsonError:
            assume(False)  # e.g. a Timestamp before year 1: proto3 JSON cannot say it

        over_http = door_outcome(door.post(route, body, who))
        assert over_http == grpc_outcome(door.target, route, message, who), (who, body[:300])
        SEEN[f"door {route.path}"][over_http[0]] += 1

    check()
    # Guards the fuzzing itself: requests got past authentication into our code.
    assert set(SEEN[f"door {route.path}"]) - {"UNAUTHENTICATED", "PERMISSION_DENIED"}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def bad_bodies(draw: st.DrawFn, descriptor: d.Descriptor) -> bytes:
    """A body that is not the request message in proto3 JSON, or only just is."""
    kind = draw(st.sampled_from(["json", "unknown field", "wrong type", "bytes", "truncated"]))
    try:
        valid = json_format.MessageToDict(draw(messages(descriptor)))
    except json_format.SerializeToJsonError:
        valid = {}
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    if kind == "unknown field":
        valid[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in valid))] = draw(_JSON)
    elif kind == "wrong type":
        names = [f.json_name for f in descriptor.fields]
        valid[draw(st.sampled_from(names))] = draw(_JSON)
    elif kind == "bytes":
        return draw(st.binary(max_size=128))
    text = json.dumps(valid).encode()
    return text[: draw(st.integers(0, max(0, len(text) - 1)))] if kind == "truncated" else text


@pytest.mark.parametrize("route", DOOR_ROUTES, ids=route_id)
def test_bad_bodies_keys_and_origins_are_json_errors_never_a_500(door: Door, route: Route) -> None:
    method = route_method(route)

    @FUZZ
    @given(bad_bodies(method.input_type), st.sampled_from(DOOR_CALLERS), st.sampled_from(ORIGINS))
    def check(body: bytes, who: str, origin: str | None) -> None:
        code, reason = door_outcome(door.post(route, body, who, origin))
        names_tenant = who in ("tenant", "unstored")
        if origin not in (None, ALLOWED_ORIGIN) and names_tenant:
            assert (code, reason) == ("PERMISSION_DENIED", "ORIGIN_NOT_ALLOWED")
        elif code != "OK":
            assert reason is not None, (code, body[:200])

    check()


@pytest.mark.parametrize("route", DOOR_ROUTES, ids=route_id)
def test_oversize_bodies_are_413_with_the_grpc_reason(door: Door, route: Route) -> None:
    for declared in (True, False):
        size = JSON_EXPANSION * max_request_bytes(route.grpc_method) + 1
        body = b" " * size
        content: Any = body if declared else iter([body[: size // 2], body[size // 2 :]])
        reply = door.client.post(
            route.path,
            content=content,
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        )
        assert reply.status_code == 413
        assert door_outcome(reply) == ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")
