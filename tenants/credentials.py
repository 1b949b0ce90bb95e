"""Pulsar credentials per tenant: the role a tenant's producers and consumers authenticate as.

Onboarding grants the role `magnetar-tenant-<id>` produce and consume on the tenant's two
namespaces, and nothing else (no tenant-admin rights, no other namespace). Its token is an
HS256 JWT whose subject is the role, signed with the broker's secret key. Only the admin
plane holds that key: it signs the token when onboarding reaches the role step and stores it
in PostgreSQL (`producer_tokens`, row-level secured), where the public gateway reads it
(gateway.producer_tokens). The gateway never sees the key, so a compromised gateway can
produce only as tenants, never mint a role or act as superuser.

Revocation: offboarding deletes the namespaces and with them the role's grants; the token
itself does not expire, and a later tenant with the same id gets the same role.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from magnetar.pulsar_tokens import sign_token, tenant_role

log = logging.getLogger(__name__)


class TenantRoleTokens:
    """Signs each tenant's own role token (the admin plane's onboarding; tests)."""

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) < 32:
            raise ValueError("an HS256 key for Pulsar has at least 256 bits")
        self._key = secret_key
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> TenantRoleTokens:
        return cls(Path(path).read_bytes())

    def role(self, tenant_id: str) -> str:
        return tenant_role(tenant_id)

    def token_for(self, tenant_id: str) -> str:
        with self._lock:
            token = self._tokens.get(tenant_id)
            if token is None:
                token = self._tokens[tenant_id] = sign_token(tenant_role(tenant_id), self._key)
            return token
