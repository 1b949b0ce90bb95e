"""The HTTP/JSON door: `POST /v1/...` for browsers and HTTP clients, on the gRPC contract.

Routes come only from the protos' `google.api.http` annotations; bodies and answers use the
canonical proto3 JSON mapping. A request is transcoded to the gateway's own gRPC method over
loopback with the same key, so keys, scopes, limits, validation and errors are the gRPC
path's. Every failure is a `google.rpc.Status` as JSON with the HTTP status of its code,
never a bare 500; bad bodies are refused before any call; cross-origin requests are checked
per tenant first (`gateway.cors`). Served by uvicorn on the gateway's event loop
(docs/clients.md, "HTTP/JSON").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from google.api import annotations_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import code_pb2, error_details_pb2, status_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from gateway import cors
from gateway.request_sizes import max_request_bytes
from gateway.status import to_rpc_status
from magnetar.errors import MagnetarError
from magnetar.v1 import event_service_pb2, personalization_service_pb2

DOMAIN = "magnetar.dev"
# JSON spells a message out: a body may be this many times the method's binary bound.
JSON_EXPANSION = 4
CALL_TIMEOUT_S = 30.0

# google.rpc.Code → HTTP status, as google/rpc/code.proto documents each code.
HTTP_STATUS = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}
SERVICES = (
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"],
    personalization_service_pb2.DESCRIPTOR.services_by_name["PersonalizationService"],
)


@dataclass(frozen=True)
class Route:
    """One annotated RPC: its HTTP path and the gRPC method it is transcoded to."""

    path: str
    grpc_method: str
    request: type[Message]
    response: type[Message]


def routes(services: Iterable[ServiceDescriptor] = SERVICES) -> list[Route]:
    """The `google.api.http` routes of `services`. Only `post` with `body: "*"` is served
    (the whole request message is the body); another pattern is a contract error."""
    found = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            if rule.WhichOneof("pattern") != "post" or rule.body != "*" or "{" in rule.post:
                raise ValueError(f'{method.full_name}: only `post` with `body: "*"` is served')
            found.append(
                Route(
                    rule.post,
                    f"/{service.full_name}/{method.name}",
                    GetMessageClass(method.input_type),
                    GetMessageClass(method.output_type),
                )
            )
    return found


def failure(code: int, message: str, reason: str | None = None) -> status_pb2.Status:
    """A Status of our own (refused before any gRPC call), with an ErrorInfo reason."""
    status = status_pb2.Status(code=code, message=message)
    if reason is not None:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    return status


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The call's full google.rpc.Status (its details trailer), or code and message alone."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    code = error.code().value[0]
    return status_pb2.Status(code=code, message=error.details() or "")


def status_response(status: status_pb2.Status, http_status: int | None = None) -> Response:
    """`{"error": {...}}` as Google's JSON APIs answer, with the mapped HTTP status."""
    http = http_status or HTTP_STATUS.get(status.code, 500)
    body = {
        "error": {
            "code": http,
            "message": status.message,
            "status": code_pb2.Code.Name(status.code),
            "details": [json_format.MessageToDict(detail) for detail in status.details],
        }
    }
    return Response(json.dumps(body), http, media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Transcoder:
    """HTTP request → gRPC call on `channel` → HTTP response, for one route; cross-origin
    requests only when `origins` allows them."""

    def __init__(self, route: Route, channel: grpc.aio.Channel, origins: cors.OriginPolicy) -> None:
        self.route = route
        self._origins = origins
        self.limit = JSON_EXPANSION * max_request_bytes(route.grpc_method)
        self._call = channel.unary_unary(
            route.grpc_method,
            request_serializer=route.request.SerializeToString,
            response_deserializer=route.response.FromString,
        )

    async def handle(self, request: Request) -> Response:
        origin = cors.cross_origin(request.headers)
        if request.method == "OPTIONS":
            preflight = request.headers.get("origin")
            headers = cors.preflight_headers(preflight) if preflight else {}
            return Response(status_code=204, headers={"Allow": "POST, OPTIONS", **headers})
        if origin is None:
            return await self._answer(request)
        try:
            await self._origins.check(origin, request.headers.get("authorization"))
        except MagnetarError as error:
            response = status_response(to_rpc_status(error))
        else:
            response = await self._answer(request)
        response.headers.update(cors.allow_headers(origin))
        return response

    async def _answer(self, request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return status_response(
                failure(
                    code_pb2.INVALID_ARGUMENT,
                    "the body must be JSON (Content-Type: application/json)",
                    "UNSUPPORTED_MEDIA_TYPE",
                ),
                415,
            )
        body = await _read_body(request, self.limit)
        if body is None:
            return status_response(
                failure(
                    code_pb2.RESOURCE_EXHAUSTED,
                    f"the body is larger than {self.limit} bytes",
                    "REQUEST_TOO_LARGE",
                ),
                413,
            )
        try:
            message = json_format.Parse(body, self.route.request())
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as error:
            return status_response(
                failure(
                    code_pb2.INVALID_ARGUMENT,
                    f"the body is not a {self.route.request.DESCRIPTOR.full_name} "
                    f"in proto3 JSON: {error}",
                    "INVALID_JSON",
                )
            )
        metadata = []
        if (authorization := request.headers.get("authorization")) is not None:
            metadata.append(("authorization", authorization))
        try:
            reply = await self._call(message, metadata=metadata, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            return status_response(status_of(error))
        return Response(json_format.MessageToJson(reply), media_type="application/json")


def build_app(
    channel: grpc.aio.Channel,
    origins: cors.OriginPolicy,
    served: Iterable[Route] | None = None,
) -> Starlette:
    async def http_error(request: Request, error: Exception) -> Response:
        http = error.status_code if isinstance(error, HTTPException) else 500
        code = {404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED}.get(http, code_pb2.UNKNOWN)
        reason = {404: "NO_SUCH_ROUTE", 405: "METHOD_NOT_ALLOWED"}.get(http)
        text = f"{request.method} {request.url.path}: no such route (POST /v1/...)"
        response = status_response(failure(code, text, reason), http)
        if (origin := cors.cross_origin(request.headers)) is not None:
            response.headers.update(cors.allow_headers(origin))
        return response

    return Starlette(
        routes=[
            StarletteRoute(
                route.path,
                Transcoder(route, channel, origins).handle,
                methods=["POST", "OPTIONS"],
            )
            for route in (routes() if served is None else served)
        ],
        exception_handlers={HTTPException: http_error},
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway owns SIGTERM/SIGINT (graceful shutdown of both doors).
        yield


class HttpDoor:
    """A running HTTP door; `port` is the bound one (0 in the settings picks a free one)."""

    def __init__(self, server: _Server, task: asyncio.Task[None], channel: Any, port: int):
        self._server, self._task, self._channel, self.port = server, task, channel, port

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task
        await self._channel.close()


async def start_http_door(
    host: str,
    port: int,
    grpc_host: str,
    grpc_port: int,
    origins: cors.OriginSource,
    *,
    origins_ttl_s: float = 5.0,
    reuse_port: bool = False,
) -> HttpDoor:
    """Serve the door on `host:port`, calling the gRPC server at `grpc_host:grpc_port`;
    browsers of the origins `origins` allows per tenant may call it (`gateway.cors`); with
    `reuse_port`, the port is shared with the other workers (`gateway.workers`)."""
    target = "127.0.0.1" if grpc_host in ("0.0.0.0", "", "::") else grpc_host
    channel = grpc.aio.insecure_channel(f"{target}:{grpc_port}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        build_app(channel, cors.OriginPolicy(origins, ttl_s=origins_ttl_s)),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # raises what stopped it
            raise OSError(f"the HTTP door on {host}:{port} stopped while starting")
        await asyncio.sleep(0.01)
    return HttpDoor(server, task, channel, sock.getsockname()[1])
