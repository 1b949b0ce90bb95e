"""Producer names: never shared by two live processes, whatever their host name."""

from __future__ import annotations

import os
import subprocess
import sys

from gateway.event_publisher import EventPublisher, PublisherOptions, SharedToken

NAME_IN_A_NEW_PROCESS = (
    "from gateway.event_publisher import EventPublisher, SharedToken;"
    "print(EventPublisher('pulsar://127.0.0.1:1', SharedToken('')).producer_name('acme'))"
)


def _publisher() -> EventPublisher:
    return EventPublisher("pulsar://127.0.0.1:1", SharedToken(""), PublisherOptions("pod-0"))


def test_two_publishers_with_one_instance_name_name_their_producers_apart() -> None:
    first, second = _publisher().producer_name("acme"), _publisher().producer_name("acme")
    assert first != second
    assert first.startswith("gateway-pod-0-") and first.endswith("-acme")


def test_two_processes_with_one_host_name_name_their_producers_apart() -> None:
    env = {**os.environ, "MAGNETAR_GATEWAY_INSTANCE": "same-host"}
    names = [
        subprocess.run(
            [sys.executable, "-c", NAME_IN_A_NEW_PROCESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert names[0] != names[1]
    assert all(n.startswith("gateway-same-host-") and n.endswith("-acme") for n in names)


def test_a_publisher_names_a_tenants_producer_the_same_every_time() -> None:
    """Within a process the name is stable: a reconnecting producer keeps its sequence."""
    publisher = _publisher()
    assert publisher.producer_name("acme") == publisher.producer_name("acme")
    assert publisher.producer_name("acme") != publisher.producer_name("other")
