"""Which Pulsar token the public gateway's producers use for a tenant.

By default ("stored") each tenant's own role token, as the admin plane signed and stored it
at onboarding (tenants.reconciler, table `producer_tokens`): the gateway reads it when it
first opens the tenant's producer, in the tenant's row-level-security scope, and holds
neither the broker's signing key nor the superuser token. A tenant without a stored token
cannot ingest until an operator issues it (`magnetar tenants issue-producer-tokens`); the
caller is told so. "superuser" is the explicit opt-out for a Pulsar that cannot sign tenant
tokens: every tenant's producer then uses the superuser token (docs/kubernetes.md).
"""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.event_publisher import PulsarCredentials, SharedToken
from magnetar.errors import FailedPrecondition
from magnetar.settings import Settings

log = logging.getLogger(__name__)


class TokenSource(Protocol):
    """Where the admin plane keeps producer tokens (`tenants.store.PostgresTenantStore`)."""

    def producer_token(self, tenant_id: str) -> str | None: ...


class StoredProducerTokens:
    """`PulsarCredentials` reading each tenant's token from the admin plane's store."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    def token_for(self, tenant_id: str) -> str:
        token = self._source.producer_token(tenant_id)
        if not token:
            raise FailedPrecondition(
                f"tenant {tenant_id!r} has no Pulsar producer token yet; the platform operator "
                "issues it with `magnetar tenants issue-producer-tokens` (or UpdateTenant)",
                reason="PRODUCER_TOKEN_MISSING",
            )
        return token


def producer_credentials(settings: Settings, stored: TokenSource) -> PulsarCredentials:
    """The public gateway's credentials, as `settings.producer_credentials` chooses: the
    tokens in `stored` by default."""
    if settings.producer_credentials == "superuser":
        log.warning(
            "producer_credentials is 'superuser': producers use the Pulsar superuser token for "
            "every tenant (no per-tenant Pulsar role)"
        )
        return SharedToken(settings.pulsar_admin_token)
    return StoredProducerTokens(stored)
