"""The admin plane signs each tenant's producer token and stores it for the public gateway:
at onboarding (the role step), on UpdateTenant, and for tenants onboarded before (the
`issue-producer-tokens` upgrade step); offboarding removes it with the tenant."""

from __future__ import annotations

import pytest

from magnetar.errors import FailedPrecondition, Unavailable
from magnetar.pulsar_tokens import tenant_role, token_role
from tenants.admin import TenantAdmin
from tenants.credentials import TenantRoleTokens
from tenants.model import StepState, TenantChanges
from tenants.reconciler import Reconciler
from tests.tenant_fakes import (
    FakeFunctionDeployer,
    FakePulsarAdmin,
    InMemoryKeyStore,
    InMemoryTenantStore,
)

KEY = b"k" * 32


def platform(*, signs: bool = True) -> tuple[TenantAdmin, Reconciler, InMemoryTenantStore]:
    store = InMemoryTenantStore()
    reconciler = Reconciler(
        FakePulsarAdmin(),
        store,
        FakeFunctionDeployer(),
        token_for=TenantRoleTokens(KEY).token_for if signs else None,
    )
    return TenantAdmin(reconciler, store, InMemoryKeyStore(store)), reconciler, store


def test_onboarding_stores_a_token_of_the_tenants_own_role() -> None:
    admin, _, store = platform()
    admin.create("acme", "Acme")
    assert token_role(store.producer_tokens["acme"], KEY) == tenant_role("acme")


def test_a_failed_role_step_stores_no_token_and_the_retry_does() -> None:
    admin, _, store = platform()
    store.faults.fail("set_producer_token")
    with pytest.raises(Unavailable):
        admin.create("acme", "Acme")
    record = store.get("acme")
    assert record is not None and record.step("pulsar_role").state is StepState.FAILED
    assert "acme" not in store.producer_tokens

    admin.create("acme", "Acme")
    assert token_role(store.producer_tokens["acme"], KEY) == tenant_role("acme")


def test_tenants_onboarded_before_tokens_get_them_by_the_upgrade_step_or_an_update() -> None:
    admin, _, store = platform()
    for tenant in ("acme", "bolt"):
        admin.create(tenant, tenant.title())
    store.producer_tokens.clear()  # as if onboarded before the admin plane stored tokens

    admin.update("bolt", TenantChanges(paths=["display_name"], display_name="Bolt Inc"))
    assert token_role(store.producer_tokens["bolt"], KEY) == tenant_role("bolt")

    assert admin.issue_producer_tokens(page_size=1) == ["acme", "bolt"]
    assert token_role(store.producer_tokens["acme"], KEY) == tenant_role("acme")


def test_the_upgrade_step_skips_a_tenant_whose_role_does_not_exist_yet() -> None:
    admin, _, store = platform()
    store.faults.fail("set_producer_token")
    with pytest.raises(Unavailable):
        admin.create("acme", "Acme")
    store.set_step("acme", "pulsar_role", StepState.PENDING)

    assert admin.issue_producer_tokens() == []
    assert store.producer_tokens == {}


def test_without_a_signing_key_onboarding_stores_nothing_and_issuing_says_why() -> None:
    admin, reconciler, store = platform(signs=False)
    admin.create("acme", "Acme")
    assert store.producer_tokens == {}
    with pytest.raises(FailedPrecondition) as refused:
        reconciler.issue_producer_token("acme")
    assert refused.value.reason == "NO_SIGNING_KEY"


def test_offboarding_removes_the_token() -> None:
    admin, _, store = platform()
    admin.create("acme", "Acme")
    assert "1 rows of producer_tokens" in admin.delete("acme")
    assert store.producer_tokens == {}
