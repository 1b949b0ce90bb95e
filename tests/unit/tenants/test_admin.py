"""TenantService's operations in domain terms: validation, update masks, paging, keys."""

from __future__ import annotations

import pytest

from magnetar.api_keys import Scope
from magnetar.errors import AlreadyExists, InvalidArgument, NotFound
from tenants.admin import TenantAdmin
from tenants.model import TenantChanges
from tenants.plans import PLANS
from tenants.reconciler import Reconciler
from tests.tenant_fakes import (
    FakeFunctionDeployer,
    FakePulsarAdmin,
    InMemoryKeyStore,
    InMemoryTenantStore,
)


@pytest.fixture
def admin() -> TenantAdmin:
    store = InMemoryTenantStore()
    reconciler = Reconciler(FakePulsarAdmin(), store, FakeFunctionDeployer())
    return TenantAdmin(reconciler, store, InMemoryKeyStore(store))


def violations(error: InvalidArgument) -> list[str]:
    return [v.field for v in error.violations]


def test_create_reports_every_invalid_field_at_once(admin: TenantAdmin) -> None:
    with pytest.raises(InvalidArgument) as refused:
        admin.create("No", "", "gold", {})
    assert violations(refused.value) == ["tenant_id", "display_name", "plan"]

    with pytest.raises(InvalidArgument) as refused:
        admin.create("acme", "x" * 201, "free", {"ingest_burst": 0})
    assert violations(refused.value) == ["display_name", "quotas.ingest_burst"]


def test_create_applies_the_plan_then_the_overrides(admin: TenantAdmin) -> None:
    onboarded = admin.create("acme", "Acme", "", {"ingest_events_per_second": 42})
    quotas = onboarded.record.spec.quotas
    assert onboarded.record.spec.plan == "free"
    assert quotas is not None and quotas.ingest_events_per_second == 42
    assert quotas.ingest_burst == PLANS["free"].ingest_burst
    with pytest.raises(AlreadyExists):
        admin.create("acme", "Acme", "", {"ingest_events_per_second": 42})


def test_update_mask_paths_decide_what_changes(admin: TenantAdmin) -> None:
    admin.create("acme", "Acme", "free")

    renamed = admin.update("acme", TenantChanges(["display_name"], display_name="ACME"))
    assert renamed.spec.display_name == "ACME" and renamed.spec.plan == "free"

    # A new plan brings its quotas, except those set in the same call.
    upgraded = admin.update(
        "acme",
        TenantChanges(
            ["plan", "quotas.ingest_burst"],
            plan="standard",
            quotas={"ingest_burst": 9999},
        ),
    )
    assert upgraded.spec.plan == "standard" and upgraded.spec.quotas is not None
    assert upgraded.spec.quotas.ingest_events_per_second == 2000
    assert upgraded.spec.quotas.ingest_burst == 9999


def test_update_refuses_unknown_output_only_and_empty_masks(admin: TenantAdmin) -> None:
    admin.create("acme", "Acme", "free")
    for paths, expected in [
        (["state"], "output only"),
        (["colour"], "not a field"),
        ([], "at least one"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            admin.update("acme", TenantChanges(paths))
        assert expected in refused.value.violations[0].description
    with pytest.raises(InvalidArgument) as refused:
        admin.update("acme", TenantChanges(["quotas"], quotas={}))  # all zero: out of bounds
    assert "tenant.quotas.ingest_events_per_second" in violations(refused.value)
    with pytest.raises(NotFound):
        admin.update("nobody", TenantChanges(["display_name"], display_name="x"))


def test_tenants_list_in_pages_with_tokens_only_this_list_accepts(admin: TenantAdmin) -> None:
    for name in ("delta", "alpha", "charlie", "bravo", "echo"):
        admin.create(name, name.title(), "free")

    seen: list[str] = []
    token = ""
    while True:
        page = admin.list_tenants(2, token)
        seen += [r.tenant_id for r in page.tenants]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert len(admin.list_tenants(0, "").tenants) == 5

    with pytest.raises(InvalidArgument):
        admin.list_tenants(1001, "")
    with pytest.raises(InvalidArgument):
        admin.list_tenants(2, "not-a-token")
    keys_token = admin.list_keys("alpha", 1, "").next_page_token
    with pytest.raises(InvalidArgument):
        admin.list_tenants(2, keys_token)


def test_keys_are_tenant_scopes_only_and_listed_newest_first(admin: TenantAdmin) -> None:
    admin.create("acme", "Acme", "free")
    for scopes in ([], [Scope.ADMIN], [None]):
        with pytest.raises(InvalidArgument):
            admin.create_key("acme", scopes)
    with pytest.raises(InvalidArgument):
        admin.create_key("acme", [Scope.READ], "x" * 201)
    with pytest.raises(NotFound):
        admin.create_key("nobody", [Scope.READ])

    issued = admin.create_key("acme", [Scope.READ, Scope.INGEST], "both")
    assert issued.stored.scopes == {Scope.READ, Scope.INGEST}
    listed = admin.list_keys("acme", 0, "")
    assert len(listed.keys) == 3  # the two first keys and this one

    first = admin.list_keys("acme", 2, "")
    second = admin.list_keys("acme", 2, first.next_page_token)
    assert len(first.keys) == 2 and len(second.keys) == 1 and not second.next_page_token
    with pytest.raises(InvalidArgument):  # another tenant's token
        admin.list_keys("other", 2, first.next_page_token)

    revoked = admin.revoke_key("acme", issued.stored.key_id)
    assert revoked.revoked
    assert admin.revoke_key("acme", issued.stored.key_id).revoked_at == revoked.revoked_at
    assert len(admin.list_keys("acme", 0, "").keys) == 2
    assert len(admin.list_keys("acme", 0, "", include_revoked=True).keys) == 3
    with pytest.raises(NotFound):
        admin.revoke_key("acme", "0123456789abcdef")
    with pytest.raises(NotFound):
        admin.revoke_key("nobody", issued.stored.key_id)


def test_delete_then_every_operation_on_the_tenant_is_not_found(admin: TenantAdmin) -> None:
    admin.create("acme", "Acme", "free")
    assert "tenant row acme" in admin.delete("acme")
    with pytest.raises(NotFound):
        admin.get("acme")
    with pytest.raises(NotFound):
        admin.delete("acme")
    with pytest.raises(NotFound):
        admin.list_keys("acme", 0, "")
    with pytest.raises(InvalidArgument):
        admin.get("")


def test_allowed_origins_are_replaced_whole_and_each_bad_one_is_named(
    admin: TenantAdmin,
) -> None:
    admin.create("acme", "Acme", "free")
    changed = admin.update(
        "acme",
        TenantChanges(
            ["allowed_origins"], allowed_origins=["https://Shop.Example", "http://localhost:3000"]
        ),
    )
    assert changed.spec.allowed_origins == ("https://shop.example", "http://localhost:3000")
    with pytest.raises(InvalidArgument) as refused:
        admin.update(
            "acme", TenantChanges(["allowed_origins"], allowed_origins=["https://ok", "*"])
        )
    assert violations(refused.value) == ["tenant.allowed_origins[1]"]
    assert refused.value.reason == "TENANT_INVALID"
    cleared = admin.update("acme", TenantChanges(["allowed_origins"]))
    assert cleared.spec.allowed_origins == ()
    # Other updates keep the list.
    admin.update("acme", TenantChanges(["allowed_origins"], allowed_origins=["https://x.example"]))
    renamed = admin.update("acme", TenantChanges(["display_name"], display_name="ACME"))
    assert renamed.spec.allowed_origins == ("https://x.example",)
