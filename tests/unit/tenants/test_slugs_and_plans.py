"""Tenant ids follow one rule valid everywhere they go; plans resolve to bounded quotas;
a tenant's Pulsar role token."""

from __future__ import annotations

import pytest

from magnetar.errors import InvalidArgument
from magnetar.pulsar_tokens import tenant_role, token_role
from tenants.credentials import TenantRoleTokens
from tenants.plans import MIB, PLANS, QUOTA_FIELDS, quota_violations, resolve_quotas
from tenants.slugs import slug_problem, validate_tenant_id


@pytest.mark.parametrize("tenant_id", ["acm", "acme", "acme-shop-2", "a" * 40, "x1-y"])
def test_valid_slugs_pass_unchanged(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize(
    ("tenant_id", "why"),
    [
        ("ab", "3 to 40 bytes"),
        ("a" * 41, "3 to 40 bytes"),
        ("Acme", "lowercase"),
        ("1acme", "start with a letter"),
        ("acme-", "not end"),
        ("ac_me", "lowercase letters"),
        ("ac.me", "lowercase letters"),  # a dot would break the API key format
        ("ac/me", "lowercase letters"),  # a slash would break topic names
        ("acmé", "lowercase letters"),
        ("public", "reserved"),
        ("pulsar", "reserved"),
    ],
)
def test_invalid_slugs_are_refused_with_a_field_violation(tenant_id: str, why: str) -> None:
    problem = slug_problem(tenant_id)
    assert problem is not None and why in problem
    with pytest.raises(InvalidArgument) as refused:
        validate_tenant_id(tenant_id)
    assert refused.value.violations[0].field == "tenant_id"
    assert refused.value.reason == "TENANT_ID_INVALID"


def test_every_plan_is_within_its_own_limits() -> None:
    for quotas in PLANS.values():
        assert quota_violations(quotas) == []


def test_overrides_replace_only_the_named_quotas() -> None:
    quotas = resolve_quotas(PLANS["free"], {"ingest_events_per_second": 7})
    assert quotas.ingest_events_per_second == 7
    assert quotas.ingest_burst == PLANS["free"].ingest_burst


def test_every_broken_limit_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as refused:
        resolve_quotas(PLANS["free"], {"ingest_events_per_second": 0, "retention_minutes": 10**9})
    fields = [v.field for v in refused.value.violations]
    assert fields == ["quotas.ingest_events_per_second", "quotas.retention_minutes"]


def test_a_backlog_quota_reaching_the_retention_size_is_refused() -> None:
    with pytest.raises(InvalidArgument) as refused:
        resolve_quotas(PLANS["free"], {"retention_size_mb": 10, "backlog_quota_bytes": 10 * MIB})
    assert refused.value.violations[0].field == "quotas.backlog_quota_bytes"


def test_unknown_quotas_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        resolve_quotas(PLANS["free"], {"free_lunch": 1})
    assert "ingest_burst" in QUOTA_FIELDS


def test_a_tenants_role_token_names_its_role_and_is_signed_with_the_brokers_key() -> None:
    key = bytes(range(32))
    tokens = TenantRoleTokens(key)

    token = tokens.token_for("acme")

    assert token_role(token, key) == tenant_role("acme") == "magnetar-tenant-acme"
    assert tokens.token_for("acme") == token  # the same for every replica and call
    with pytest.raises(ValueError):
        token_role(token, bytes(32))  # another key does not verify it
    with pytest.raises(ValueError):
        TenantRoleTokens(b"short")
