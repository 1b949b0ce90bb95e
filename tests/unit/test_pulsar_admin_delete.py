"""Deleting a tenant or namespace rides out the broker's "Directory not empty" race.

The broker is played by an httpx transport: these tests are about what the client does with
the answers, which the real broker gives only by chance (the loop on the real broker is in
tests/integration/test_tenant_delete_race.py).
"""

from __future__ import annotations

import httpx
import pytest

from magnetar.pulsar_admin import PulsarAdmin, PulsarAdminError, is_metadata_race
from magnetar.retry import Backoff

RACE = (
    '{"reason": "org.apache.zookeeper.KeeperException$NotEmptyException: KeeperErrorCode ='
    ' Directory not empty for /namespace/acme"}'
)


class Broker:
    """Answers DELETE with 500 "Directory not empty" `races` times, then deletes."""

    def __init__(self, races: int, *, stays: bool = False, status: int = 500) -> None:
        self.races = races
        self.stays = stays
        self.status = status
        self.deleted = False
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if request.method == "DELETE":
            if self.races:
                self.races -= 1
                return httpx.Response(self.status, text=RACE)
            self.deleted = not self.stays
            return httpx.Response(204)
        return httpx.Response(404 if self.deleted else 200, json={})


def _admin(broker: Broker, slept: list[float]) -> PulsarAdmin:
    return PulsarAdmin(
        "http://broker.invalid",
        transport=httpx.MockTransport(broker),
        delete_backoff=Backoff(first_s=0.2, factor=2, max_s=1.0, budget_s=10.0),
        sleep=slept.append,
    )


def test_a_tenant_delete_is_retried_through_the_race_then_checked_gone() -> None:
    broker, slept = Broker(races=3), list[float]()
    _admin(broker, slept).delete_tenant("acme")
    assert slept == [0.2, 0.4, 0.8]
    # Its namespaces (and their functions) first: none here.
    assert broker.requests == ["GET /admin/v2/namespaces/acme"] + [
        "DELETE /admin/v2/tenants/acme"
    ] * 4 + ["GET /admin/v2/tenants/acme"]


def test_a_namespace_delete_is_retried_through_the_race() -> None:
    broker, slept = Broker(races=1), list[float]()
    _admin(broker, slept).delete_namespace("acme/events")
    assert slept == [0.2] and broker.deleted


def test_a_race_that_outlasts_the_budget_is_raised() -> None:
    broker, slept = Broker(races=100), list[float]()
    with pytest.raises(PulsarAdminError, match="Directory not empty"):
        _admin(broker, slept).delete_tenant("acme")
    deletes = [r for r in broker.requests if r.startswith("DELETE")]
    assert sum(slept) <= 10.0 and len(deletes) == len(slept) + 1


def test_another_server_error_is_not_retried() -> None:
    broker, slept = Broker(races=1, status=503), list[float]()
    with pytest.raises(PulsarAdminError):
        _admin(broker, slept).delete_tenant("acme")
    assert slept == []


def test_a_tenant_that_survives_its_delete_is_an_error() -> None:
    broker, slept = Broker(races=0, stays=True), list[float]()
    with pytest.raises(PulsarAdminError, match="still exists"):
        _admin(broker, slept).delete_tenant("acme")


def test_only_the_not_empty_answer_is_the_race() -> None:
    assert is_metadata_race(PulsarAdminError(500, "DELETE", "/t", RACE))
    assert not is_metadata_race(PulsarAdminError(500, "DELETE", "/t", '{"reason": "boom"}'))
    assert not is_metadata_race(PulsarAdminError(409, "DELETE", "/t", RACE))
    assert not is_metadata_race(RuntimeError("Directory not empty"))
