"""`--workers`: each worker's metrics port and quota share; a held port is not shared."""

from __future__ import annotations

import socket

import pytest

from gateway.workers import claim_port, worker_settings
from magnetar.settings import Settings


def test_each_worker_has_its_metrics_port_and_its_share_of_the_quotas() -> None:
    settings = Settings(metrics_port=9464, gateway_replicas=3)
    second = worker_settings(settings, 1, 4)
    assert (second.metrics_port, second.gateway_replicas) == (9465, 12)
    assert worker_settings(Settings(metrics_port=0), 2, 4).metrics_port == 0  # any free port


def test_a_port_another_process_holds_is_refused_not_shared() -> None:
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        with pytest.raises(OSError):
            claim_port("127.0.0.1", held.getsockname()[1])
    assert claim_port("127.0.0.1", 0) > 0
