"""The operations of TenantService (and `magnetar tenants`), in domain terms.

Validates what a caller asks, then delegates: lifecycle to the `Reconciler`, keys to the
`KeyStore`. Every rule a request can break is reported at once as field violations. No
gRPC, no generated code: the servicer and the CLI translate to and from this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import TENANT_SCOPES, Scope
from magnetar.errors import FieldViolation, InvalidArgument, NotFound
from tenants import paging
from tenants.model import (
    IssuedKey,
    KeyPage,
    Onboarded,
    TenantChanges,
    TenantPage,
    TenantRecord,
    TenantSpec,
    TenantState,
    TenantView,
)
from tenants.origins import origin_violations
from tenants.plans import DEFAULT_PLAN, QUOTA_FIELDS, plan_quotas, quota_violations
from tenants.ports import KeyStore, TenantStore
from tenants.reconciler import Reconciler
from tenants.slugs import slug_problem

MAX_DISPLAY_NAME_BYTES = 200
MAX_DESCRIPTION_BYTES = 200
UPDATABLE_PATHS = frozenset(
    {
        "display_name",
        "plan",
        "quotas",
        *(f"quotas.{name}" for name in QUOTA_FIELDS),
        "allowed_origins",
    }
)
OUTPUT_ONLY_PATHS = frozenset(
    {
        "tenant_id",
        "state",
        "provisioning_steps",
        "functions",
        "backlogs",
        "create_time",
        "update_time",
    }
)


def _display_name_problem(name: str) -> str | None:
    size = len(name.encode("utf-8"))
    if not name.strip():
        return "required: 1 to 200 bytes"
    if size > MAX_DISPLAY_NAME_BYTES:
        return f"at most {MAX_DISPLAY_NAME_BYTES} bytes, got {size}"
    if any(ord(c) < 32 for c in name):
        return "no control characters"
    return None


def _invalid(violations: list[FieldViolation], reason: str = "TENANT_INVALID") -> InvalidArgument:
    first = violations[0]
    return InvalidArgument(
        f"{len(violations)} invalid field(s); first: {first.field}: {first.description}",
        violations,
        reason=reason,
    )


def _required_id(tenant_id: str) -> str:
    """The id of an existing tenant to act on: required, and a valid slug — an id no tenant
    can have is the caller's mistake, answered before it reaches a store (PostgreSQL refuses
    some of them outright, a NUL for one)."""
    if not tenant_id:
        raise _invalid([FieldViolation("tenant_id", "required")])
    if problem := slug_problem(tenant_id):
        raise _invalid([FieldViolation("tenant_id", problem)])
    return tenant_id


class TenantAdmin:
    def __init__(self, reconciler: Reconciler, store: TenantStore, keys: KeyStore) -> None:
        self._reconciler = reconciler
        self._store = store
        self._keys = keys

    # -- tenants ----------------------------------------------------------------------

    def create(
        self,
        tenant_id: str,
        display_name: str,
        plan: str = "",
        quota_overrides: Mapping[str, int] | None = None,
    ) -> Onboarded:
        plan = plan or DEFAULT_PLAN
        violations = []
        if problem := slug_problem(tenant_id):
            violations.append(FieldViolation("tenant_id", problem))
        if problem := _display_name_problem(display_name):
            violations.append(FieldViolation("display_name", problem))
        spec = None
        try:
            quotas = replace(plan_quotas(plan), **dict(quota_overrides or {}))
            violations += quota_violations(quotas)
            spec = TenantSpec(tenant_id, display_name, plan, quotas)
        except InvalidArgument as error:
            violations += error.violations
        except TypeError:
            violations.append(FieldViolation("quotas", "unknown quota"))
        if violations or spec is None:
            raise _invalid(violations)
        return self._reconciler.onboard(spec)

    def get(self, tenant_id: str) -> TenantView:
        return self._reconciler.view(_required_id(tenant_id))

    def list_tenants(self, page_size: int, page_token: str) -> TenantPage:
        size = paging.page_size(page_size)
        after = str(paging.decode_token(page_token, "tenants").get("after", ""))
        # One more than asked tells whether another page exists without a count.
        records = self._store.page(after, size + 1)
        if len(records) <= size:
            return TenantPage(records)
        page = records[:size]
        return TenantPage(page, paging.encode_token("tenants", after=page[-1].tenant_id))

    def update(self, tenant_id: str, changes: TenantChanges) -> TenantRecord:
        current = self._reconciler.record(_required_id(tenant_id))
        return self._reconciler.update(self._changed_spec(current, changes))

    def _changed_spec(self, current: TenantRecord, changes: TenantChanges) -> TenantSpec:
        paths = set(changes.paths)
        violations = [
            FieldViolation(
                f"update_mask.paths[{i}]",
                f"{path!r} is output only"
                if path in OUTPUT_ONLY_PATHS
                else f"{path!r} is not a field of Tenant that can change",
            )
            for i, path in enumerate(changes.paths)
            if path not in UPDATABLE_PATHS
        ]
        if not paths:
            violations.append(FieldViolation("update_mask", "name at least one field to change"))
        spec = current.spec
        if "display_name" in paths:
            if problem := _display_name_problem(changes.display_name):
                violations.append(FieldViolation("tenant.display_name", problem))
            spec = replace(spec, display_name=changes.display_name)
        quotas = spec.quotas or plan_quotas(spec.plan or DEFAULT_PLAN)
        if "plan" in paths:
            plan = changes.plan or DEFAULT_PLAN
            try:
                # A new plan brings its quotas, unless the same call sets some.
                quotas = plan_quotas(plan, "tenant.plan")
                spec = replace(spec, plan=plan)
            except InvalidArgument as error:
                violations += error.violations
        named = QUOTA_FIELDS if "quotas" in paths else ()
        named += tuple(p.removeprefix("quotas.") for p in paths if p.startswith("quotas."))
        try:
            quotas = replace(quotas, **{name: changes.quotas.get(name, 0) for name in named})
        except TypeError:
            violations.append(FieldViolation("tenant.quotas", "unknown quota"))
        violations += quota_violations(quotas, "tenant.quotas.")
        if "allowed_origins" in paths:
            origins, problems = origin_violations(changes.allowed_origins, "tenant.allowed_origins")
            violations += problems
            spec = replace(spec, allowed_origins=origins)
        if violations:
            raise _invalid(violations)
        return replace(spec, quotas=quotas)

    def delete(self, tenant_id: str) -> list[str]:
        return self._reconciler.offboard(_required_id(tenant_id))

    def issue_producer_tokens(self, page_size: int = 100) -> list[str]:
        """Sign and store the producer token of every tenant whose Pulsar role exists: the
        upgrade step for tenants onboarded before the gateway read stored tokens. Safe to
        repeat (a token is the same for the same key and role). Returns the tenants issued."""
        issued: list[str] = []
        after = ""
        while records := self._store.page(after, page_size):
            for record in records:
                if self._reconciler.issue_producer_token(record.tenant_id):
                    issued.append(record.tenant_id)
            after = records[-1].tenant_id
        return issued

    # -- keys -------------------------------------------------------------------------

    def _live(self, tenant_id: str) -> TenantRecord:
        record = self._reconciler.record(_required_id(tenant_id))
        if record.state is TenantState.DELETING:
            raise NotFound(f"tenant {tenant_id!r} does not exist", reason="TENANT_NOT_FOUND")
        return record

    def create_key(
        self, tenant_id: str, scopes: Sequence[Scope | None], description: str = ""
    ) -> IssuedKey:
        violations = []
        if not scopes:
            violations.append(FieldViolation("scopes", "name any of INGEST, READ and MANAGE"))
        for i, scope in enumerate(scopes):
            if scope is None:
                violations.append(FieldViolation(f"scopes[{i}]", "unspecified scope"))
            elif scope not in TENANT_SCOPES:
                violations.append(
                    FieldViolation(f"scopes[{i}]", f"{scope} belongs to the platform's key only")
                )
        size = len(description.encode("utf-8"))
        if size > MAX_DESCRIPTION_BYTES:
            violations.append(
                FieldViolation("description", f"at most {MAX_DESCRIPTION_BYTES} bytes, got {size}")
            )
        if violations:
            raise _invalid(violations, reason="API_KEY_INVALID_REQUEST")
        self._live(tenant_id)
        minted, stored = self._keys.create(
            tenant_id, frozenset(s for s in scopes if s is not None), description
        )
        return IssuedKey(minted, stored)

    def list_keys(
        self, tenant_id: str, page_size: int, page_token: str, include_revoked: bool = False
    ) -> KeyPage:
        size = paging.page_size(page_size)
        position = paging.decode_token(
            page_token, "keys", tenant=tenant_id, revoked=include_revoked
        )
        offset = int(position.get("offset", 0))
        self._live(tenant_id)
        keys = self._keys.list(tenant_id, include_revoked=include_revoked)
        page = keys[offset : offset + size]
        if offset + size >= len(keys):
            return KeyPage(page)
        token = paging.encode_token(
            "keys", tenant=tenant_id, revoked=include_revoked, offset=offset + size
        )
        return KeyPage(page, token)

    def revoke_key(self, tenant_id: str, key_id: str) -> StoredKey:
        self._live(tenant_id)
        if not key_id:
            raise _invalid([FieldViolation("key_id", "required")])
        return self._keys.revoke(tenant_id, key_id)
