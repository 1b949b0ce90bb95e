"""A tenant's clock through a real gateway on real PostgreSQL: history committed long ago is
served as if at its end, and a newer commit moves the clock (heard on the change stream).

State is written with the materializer's own `commit_batch` (its NOTIFY is what the gateway
hears), with event times a year back, as an import of old history leaves them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from gateway.wiring import GatewayOptions
from magnetar.personalization.decay import DAY_MS
from magnetar.settings import Settings
from magnetar.v1 import personalization_service_pb2 as pb
from tests.e2e.grpc_support import Stubs, stubs
from tests.integration.gateway_harness import RunningGateway
from tests.integration.serving_support import NOW, ServingTenant, commit, purchase

pytestmark = pytest.mark.integration

YEAR_AGO = NOW - 365 * DAY_MS


@pytest.fixture(scope="module")
def gateway(settings: Settings, admin_key: str) -> Iterator[RunningGateway]:
    running = RunningGateway(
        settings.merged({"grpc_port": 0, "admin_api_key": admin_key}), GatewayOptions()
    )
    assert running.server.adapters.feed.listener.wait_connected(10)
    yield running
    running.stop()


def _hourly(client: Stubs, tenant: ServingTenant) -> list[str]:
    reply = client.personalization.Trending(
        pb.TrendingRequest(window=pb.TRENDING_WINDOW_HOUR, k=5), metadata=tenant.read, timeout=5
    )
    return [item.item_id for item in reply.items]


def _outdoor(client: Stubs, tenant: ServingTenant) -> float:
    """ann's affinity to "outdoor", decayed to the tenant's clock."""
    reply = client.personalization.GetUserProfile(
        pb.GetUserProfileRequest(user_id="ann"), metadata=tenant.read, timeout=5
    )
    return float(next(c.score for c in reply.profile.top_categories if c.category == "outdoor"))


def test_old_history_is_served_as_if_at_its_end_and_a_newer_commit_moves_the_clock(
    settings: Settings, gateway: RunningGateway, shop: ServingTenant
) -> None:
    tenant = shop.tenant_id
    commit(
        settings,
        tenant,
        purchase(tenant, "ann", "a1", "tent", YEAR_AGO, "outdoor"),
        purchase(tenant, "bob", "b1", "tent", YEAR_AGO + 1_000, "outdoor"),
        purchase(tenant, "bob", "b1", "lantern", YEAR_AGO + 2_000, "outdoor"),
    )
    with grpc.insecure_channel(gateway.address) as channel:
        client = stubs(channel)
        # At wall-clock now a year-old hourly score is zero: the list would be empty.
        assert _hourly(client, shop) == ["tent", "lantern"]
        reply = client.personalization.Recommend(
            pb.RecommendRequest(user_id="ann", k=5), metadata=shop.read, timeout=5
        )
        assert not reply.cold_start
        assert "lantern" in [item.item_id for item in reply.items]

        assert _outdoor(client, shop) == pytest.approx(8.0)  # one purchase, not decayed

        # Thirty days (one affinity half-life) later in that history, ann's affinity is half.
        commit(settings, tenant, purchase(tenant, "cy", "c1", "mug", YEAR_AGO + 30 * DAY_MS, "k"))
        deadline = time.monotonic() + 5
        while _outdoor(client, shop) != pytest.approx(4.0, rel=1e-3):
            assert time.monotonic() < deadline, "the newer commit never moved the clock"
            time.sleep(0.1)
