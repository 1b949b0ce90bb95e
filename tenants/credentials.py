"""Pulsar credentials per tenant: the role a tenant's producers and consumers authenticate as.

The role `magnetar-tenant-<id>` may produce and consume on the tenant's two namespaces and
nothing else; its token is an HS256 JWT with the role as subject, signed with the broker's
key, which only the admin plane holds. Offboarding removes the grants; tokens do not expire
(docs/tenants.md, "Pulsar security").
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
