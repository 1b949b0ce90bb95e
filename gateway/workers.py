"""`magnetar gateway serve --workers N`: N gateway processes sharing one gRPC port.

One Python process serves on one core (the GIL); a node with more cores runs several. Each
worker is a whole gateway (`gateway.server.serve`): its own serving memory and change-stream
listener (`gateway.serving_memory`), key cache, connection pools and Pulsar producers. What
the supervisor guarantees:

* the gRPC port is bound by every worker with SO_REUSEPORT, so the kernel spreads new
  connections over them (gRPC balances per connection: a client needs several connections
  to reach several workers, docs/serving.md "More than one process"); the HTTP/JSON port
  likewise. Before starting any worker it binds each port once without SO_REUSEPORT and lets
  go: a port another process holds (another gateway, in any mode) fails the start instead of
  being silently shared;
* worker `i` (from 0) serves /metrics on `metrics_port + i`: each process has its own
  counters, so each is scraped on its own port;
* a tenant's ingest quota is split over replicas times workers (`gateway_replicas`), as each
  worker enforces its share alone (docs/tenants.md, "Quotas and replicas");
* SIGTERM or SIGINT is passed to every worker, each drains as a single gateway does, and the
  supervisor exits 0 once all have; a worker that dies on its own stops the others and the
  supervisor exits 1, so the pod (or whatever runs it) restarts the whole set.
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
        # The first worker that ended on its own: its status is the supervisor's.
        ended = next((p.exitcode for p in processes if not p.is_alive() and p.exitcode), None)
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
        return 1 if failed or any(p.exitcode for p in processes) else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
