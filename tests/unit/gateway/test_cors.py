"""gateway.cors: who is cross-origin, which tenant a key names, the cached decision."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cors import OriginPolicy, cross_origin, key_tenant
from magnetar.api_keys import mint_key
from magnetar.errors import PermissionDenied


class Origins:
    def __init__(self) -> None:
        self.allowed: dict[str, frozenset[str]] = {}
        self.lookups = 0

    def allowed_origins(self, tenant_id: str) -> frozenset[str]:
        self.lookups += 1
        return self.allowed.get(tenant_id, frozenset())


def test_only_another_hosts_origin_is_cross_origin() -> None:
    assert cross_origin({"host": "door:8090"}) is None
    assert cross_origin({"host": "door:8090", "origin": "http://door:8090"}) is None
    assert cross_origin({"host": "door:8090", "origin": "https://shop"}) == "https://shop"
    assert cross_origin({"host": "door:8090", "origin": "null"}) == "null"


def test_the_tenant_comes_from_the_key_text_alone() -> None:
    assert key_tenant(f"Bearer {mint_key('acme').secret}") == "acme"
    assert key_tenant(None) is None
    assert key_tenant("Bearer not-a-key") is None
    assert key_tenant("Basic abc") is None


def test_the_policy_allows_listed_origins_and_refuses_others_by_reason() -> None:
    now = [0.0]
    source = Origins()
    source.allowed["acme"] = frozenset({"https://shop"})
    policy = OriginPolicy(source, ttl_s=5, clock=lambda: now[0])
    key = f"Bearer {mint_key('acme').secret}"

    async def scenario() -> None:
        await policy.check("https://shop", key)
        with pytest.raises(PermissionDenied) as refused:
            await policy.check("https://evil", key)
        assert refused.value.reason == "ORIGIN_NOT_ALLOWED"
        assert refused.value.metadata == {"origin": "https://evil", "tenant_id": "acme"}
        assert source.lookups == 1  # cached
        source.allowed["acme"] = frozenset({"https://evil"})
        now[0] = 6.0  # past the TTL: the update is seen
        await policy.check("https://evil", key)
        assert source.lookups == 2
        await policy.check("https://evil", None)  # no tenant: left to the gRPC layer

    asyncio.run(scenario())
