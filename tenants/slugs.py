"""Tenant ids: slugs that name a Pulsar tenant, a key's prefix and every row of the tenant.

The rule (3 to 40 bytes of ``[a-z0-9-]``, starting with a letter, not ending with ``-``) is
stricter than Pulsar's own (``[-=:.\\w]+``) so that the same id is valid everywhere it goes:
a Pulsar tenant and role, the API key format (``mgk.<tenant>.<key>.<random>``, which splits
on dots), a file name, a PostgreSQL value, a URL path segment. Names Pulsar or the platform
use themselves are reserved, so no tenant can be created over ``public`` or ``pulsar``.
"""

from __future__ import annotations

import re

from magnetar.errors import FieldViolation, InvalidArgument

MIN_LENGTH = 3
MAX_LENGTH = 40
_SLUG = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")

# Pulsar's own tenants (`public`, `pulsar` for system namespaces, `sample` in examples)
# and names the platform keeps for itself.
RESERVED = frozenset({"public", "pulsar", "sample", "magnetar", "platform", "admin", "system"})


def slug_problem(tenant_id: str) -> str | None:
    """Why `tenant_id` is not a valid tenant id, or None when it is."""
    size = len(tenant_id.encode("utf-8"))
    if not MIN_LENGTH <= size <= MAX_LENGTH:
        return f"must be {MIN_LENGTH} to {MAX_LENGTH} bytes long, got {size}"
    if not _SLUG.fullmatch(tenant_id):
        return "must be lowercase letters, digits and '-', start with a letter and not end with '-'"
    if tenant_id in RESERVED:
        return f"{tenant_id!r} is reserved"
    return None


def validate_tenant_id(tenant_id: str, field: str = "tenant_id") -> str:
    """`tenant_id` unchanged when valid; InvalidArgument with a field violation otherwise."""
    problem = slug_problem(tenant_id)
    if problem is not None:
        raise InvalidArgument(
            f"invalid tenant id {tenant_id!r}: {problem}",
            [FieldViolation(field, problem)],
            reason="TENANT_ID_INVALID",
        )
    return tenant_id
