"""The tenant lifecycle's domain: desired state, provisioning steps and what a read shows.

Pure data, no I/O. The reconciler records a `TenantRecord` (the desired `TenantSpec` plus
the state of every step) in PostgreSQL; the gateway and the CLI show it with live function
and backlog status from Pulsar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from magnetar.api_key_store import StoredKey
from magnetar.api_keys import NewKey
from tenants.plans import Quotas


class TenantState(StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    FAILED = "failed"
    DELETING = "deleting"


class StepState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


# Onboarding, in order. Each step is safe to repeat; a resumed onboarding skips the steps
# recorded DONE. `keys` is last and commits together with the ACTIVE state, so the first
# keys exist exactly when the tenant is active (and are shown to exactly one caller).
ONBOARDING_STEPS = (
    "pulsar_tenant",
    "namespaces",
    "pulsar_role",
    "topics",
    "schemas",
    "functions",
    "keys",
)


@dataclass(frozen=True)
class StepStatus:
    name: str
    state: StepState = StepState.PENDING
    message: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class TenantSpec:
    """What the operator asked for: the desired state."""

    tenant_id: str
    display_name: str
    plan: str
    # None for tenants recorded before plans existed (not rate-limited by the gateway).
    quotas: Quotas | None
    # Web origins whose pages may call the HTTP door (tenants.origins), canonical.
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class TenantRecord:
    """A tenant as recorded: desired state, where onboarding is, timestamps."""

    spec: TenantSpec
    state: TenantState
    steps: tuple[StepStatus, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def tenant_id(self) -> str:
        return self.spec.tenant_id

    def step(self, name: str) -> StepStatus:
        for status in self.steps:
            if status.name == name:
                return status
        return StepStatus(name)

    def done(self, name: str) -> bool:
        return self.step(name).state is StepState.DONE


def pending_steps() -> tuple[StepStatus, ...]:
    return tuple(StepStatus(name) for name in ONBOARDING_STEPS)


@dataclass(frozen=True)
class FunctionHealth:
    """One pipeline function as the functions worker reports it."""

    name: str
    running_instances: int
    instances: int
    last_error: str = ""


@dataclass(frozen=True)
class SubscriptionBacklog:
    topic: str
    subscription: str
    backlog: int


@dataclass(frozen=True)
class TenantView:
    """A record with live status (GetTenant)."""

    record: TenantRecord
    functions: Sequence[FunctionHealth] = ()
    backlogs: Sequence[SubscriptionBacklog] = ()


@dataclass(frozen=True)
class IssuedKey:
    """A key minted for a tenant: the secret (shown once) and what was stored."""

    minted: NewKey
    stored: StoredKey


@dataclass(frozen=True)
class Onboarded:
    """CreateTenant's outcome: the tenant and its first keys."""

    record: TenantRecord
    ingest_key: IssuedKey
    read_key: IssuedKey


@dataclass(frozen=True)
class TenantPage:
    tenants: Sequence[TenantRecord]
    next_page_token: str = ""


@dataclass(frozen=True)
class KeyPage:
    keys: Sequence[StoredKey]
    next_page_token: str = ""


@dataclass(frozen=True)
class TenantChanges:
    """UpdateTenant's request in domain terms: the field-mask paths and the new values."""

    paths: Sequence[str]
    display_name: str = ""
    plan: str = ""
    quotas: dict[str, int] = field(default_factory=dict)
    allowed_origins: Sequence[str] = ()


@dataclass(frozen=True)
class IngestQuota:
    """A tenant's ingest rate at the gateway: `events_per_second`, in bursts of `burst`."""

    events_per_second: int
    burst: int
