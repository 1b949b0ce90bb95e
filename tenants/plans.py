"""Plans and quotas: what a tenant may send and keep, enforced by the gateway and by Pulsar.

A plan is a named set of quotas; a tenant may override any of them. The gateway's rate
(`ingest_*`) is what throttles; Pulsar's namespace publish rate, set above it, is the
backstop; the backlog quota holds producers rather than evicting and stays below the
retention size, as Pulsar requires (docs/tenants.md, "Plans and quotas").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from magnetar.errors import FieldViolation, InvalidArgument

MIB = 1024 * 1024
DEFAULT_PLAN = "free"


@dataclass(frozen=True)
class Quotas:
    """A tenant's quotas and policies (mirrors magnetar.v1.TenantQuotas)."""

    ingest_events_per_second: int
    ingest_burst: int
    # 0 = no Pulsar publish rate limit.
    publish_messages_per_second: int
    publish_bytes_per_second: int
    retention_minutes: int
    retention_size_mb: int
    backlog_quota_bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Quotas:
        return cls(**{f.name: int(values[f.name]) for f in fields(cls)})


QUOTA_FIELDS = tuple(f.name for f in fields(Quotas))

# (lowest, highest) accepted for each quota.
LIMITS: dict[str, tuple[int, int]] = {
    "ingest_events_per_second": (1, 1_000_000),
    "ingest_burst": (1, 1_000_000),
    "publish_messages_per_second": (0, 10_000_000),
    "publish_bytes_per_second": (0, 10 * 1024**3),
    # One year; Pulsar's "infinite" (-1) is not offered: retention is a cost a plan bounds.
    "retention_minutes": (1, 365 * 24 * 60),
    "retention_size_mb": (1, 10 * 1024 * 1024),
    "backlog_quota_bytes": (MIB, 10 * 1024**4),
}

PLANS: dict[str, Quotas] = {
    "free": Quotas(
        ingest_events_per_second=100,
        ingest_burst=200,
        publish_messages_per_second=500,
        publish_bytes_per_second=2 * MIB,
        retention_minutes=24 * 60,
        retention_size_mb=1024,
        backlog_quota_bytes=512 * MIB,
    ),
    "standard": Quotas(
        ingest_events_per_second=2_000,
        ingest_burst=4_000,
        publish_messages_per_second=10_000,
        publish_bytes_per_second=32 * MIB,
        retention_minutes=7 * 24 * 60,
        retention_size_mb=20_480,
        backlog_quota_bytes=8 * 1024 * MIB,
    ),
    "enterprise": Quotas(
        ingest_events_per_second=20_000,
        ingest_burst=40_000,
        publish_messages_per_second=0,
        publish_bytes_per_second=0,
        retention_minutes=30 * 24 * 60,
        retention_size_mb=204_800,
        backlog_quota_bytes=64 * 1024 * MIB,
    ),
}


def plan_quotas(plan: str, field: str = "plan") -> Quotas:
    try:
        return PLANS[plan]
    except KeyError:
        choices = ", ".join(sorted(PLANS))
        raise InvalidArgument(
            f"unknown plan {plan!r}; choose from {choices}",
            [FieldViolation(field, f"must be one of {choices}")],
            reason="PLAN_UNKNOWN",
        ) from None


def quota_violations(quotas: Quotas, prefix: str = "quotas.") -> list[FieldViolation]:
    found = []
    for name, (low, high) in LIMITS.items():
        value = getattr(quotas, name)
        if not low <= value <= high:
            found.append(FieldViolation(prefix + name, f"must be {low} to {high}, got {value}"))
    if quotas.backlog_quota_bytes >= quotas.retention_size_mb * MIB:
        found.append(
            FieldViolation(
                prefix + "backlog_quota_bytes",
                "must stay below the retention size (Pulsar refuses a backlog quota that "
                f"reaches it): {quotas.backlog_quota_bytes} >= {quotas.retention_size_mb} MiB",
            )
        )
    return found


def resolve_quotas(base: Quotas, overrides: Mapping[str, int]) -> Quotas:
    """`base` with `overrides` applied; InvalidArgument listing every broken limit."""
    unknown = [
        FieldViolation(f"quotas.{name}", "unknown quota")
        for name in overrides
        if name not in QUOTA_FIELDS
    ]
    if unknown:
        raise InvalidArgument("unknown quota", unknown, reason="QUOTA_UNKNOWN")
    quotas = replace(base, **{name: int(value) for name, value in overrides.items()})
    violations = quota_violations(quotas)
    if violations:
        raise InvalidArgument(
            f"{len(violations)} quota(s) out of bounds (first: {violations[0].field})",
            violations,
            reason="QUOTA_INVALID",
        )
    return quotas
