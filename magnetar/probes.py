"""Probes of local servers, for whatever starts one and waits for it (the dev stack, the
benchmarks, the tests): a port free to bind, and whether a gRPC server answers SERVING."""

from __future__ import annotations

import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick), for a process to bind next."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def serving(address: str, timeout_s: float = 1.0) -> bool:
    """True when the gRPC server at `address` answers the overall health check SERVING."""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
