"""`magnetar gateway serve --workers N`: N whole gateway processes sharing one gRPC port.

The supervisor guarantees (docs/serving.md, "More than one process"): every worker binds
the gRPC and HTTP/JSON ports with SO_REUSEPORT, after a check that no other process holds
them; worker `i` serves /metrics on `metrics_port + i`; each enforces its share of a
tenant's ingest quota (replicas times workers); SIGTERM or SIGINT drains every worker, exit
0 once all have (a worker still starting ends by the signal: clean too); a worker that dies
on its own stops the others, exit 1.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import replace
from typing import Any

from magnetar.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE_S = 60.0


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def worker_settings(settings: Settings, index: int, workers: int) -> Settings:
    """Worker `index`'s settings: its own metrics port, its share of the ingest quotas."""
    return replace(
        settings,
        metrics_port=settings.metrics_port + index if settings.metrics_port else 0,
        gateway_replicas=settings.gateway_replicas * workers,
    )


def claim_port(host: str, port: int) -> int:
    """Bind `host:port` alone (no SO_REUSEPORT) and let go: OSError when a process holds
    it. Port 0 gives a free port, which the workers then share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host or "0.0.0.0", port))
        return int(sock.getsockname()[1])


def _worker(settings: Settings) -> None:
    import asyncio

    from gateway.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(settings, reuse_port=True))


def run_workers(settings: Settings, workers: int) -> int:
    """Serve with `workers` processes until SIGTERM/SIGINT; the exit status."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    settings = replace(settings, grpc_port=claim_port(settings.grpc_host, settings.grpc_port))
    if settings.http_port:
        claim_port(settings.http_host, settings.http_port)
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = [
        context.Process(
            target=_worker,
            args=(worker_settings(settings, index, workers),),
            name=f"gateway-worker-{index}",
        )
        for index in range(workers)
    ]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        log.info("%d gateway workers on %s:%d", workers, settings.grpc_host, settings.grpc_port)
        while not stopping and all(p.is_alive() for p in processes):
            time.sleep(0.2)
        failed = not stopping
        # Asked to stop, a worker still starting (no handler of its own yet) ends by SIGTERM
        # itself: that is a clean stop too.
        clean = (0, -signal.SIGTERM) if stopping else (0,)
        # The first worker that ended on its own: its status is the supervisor's.
        ended = next(
            (p.exitcode for p in processes if not p.is_alive() and p.exitcode not in clean),
            None,
        )
        if failed:
            log.error("a gateway worker exited on its own: stopping the others")
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
                failed = True
        if ended:
            return int(ended)
        return 1 if failed or any(p.exitcode not in clean for p in processes) else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
