"""The real tenant platform from settings: the one place that builds the I/O adapters.

Used by the admin plane (`magnetar admin serve`, gateway.admin_server), by `magnetar
tenants` and by the benchmarks' clean-up (`tenant_admin`): the only users of the Pulsar
superuser token (`Settings.pulsar_admin_token_file`) and of the broker's token signing key
(`Settings.pulsar_token_secret_key_file`), which signs each tenant's producer token at
onboarding. The public gateway holds neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from functions.deployment import PipelineOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.db.engine import make_engine, make_sessionmaker
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tenants.admin import TenantAdmin
from tenants.credentials import TenantRoleTokens
from tenants.function_state import FunctionStateStorage
from tenants.functions_deploy import PipelineDeployer
from tenants.ports import OffboardingHook
from tenants.pulsar_port import translated
from tenants.reconciler import Reconciler
from tenants.store import PostgresTenantStore


@dataclass
class TenantPlatform:
    admin: TenantAdmin
    store: PostgresTenantStore
    pulsar: PulsarAdmin
    deployer: PipelineDeployer

    def close(self) -> None:
        self.pulsar.close()


def pipeline_options(settings: Settings) -> PipelineOptions:
    return PipelineOptions(database_url_file=settings.functions_database_url_file)


def role_token_signer(settings: Settings) -> Callable[[str], str] | None:
    """Signs each tenant's producer token with the broker's key; None without a key (the
    gateway then produces with the superuser token: `Settings.producer_credentials`)."""
    if not settings.pulsar_token_secret_key_file:
        return None
    return TenantRoleTokens.from_file(settings.pulsar_token_secret_key_file).token_for


def issue_producer_token(settings: Settings, sessions: sessionmaker[Session], tenant: str) -> None:
    """What onboarding does for a tenant made outside it (the demo, scratch tenants of the
    benchmarks): its role token, stored where the public gateway reads it (its tenants row
    must exist). Without a signing key the gateway produces as the superuser: nothing to do."""
    sign = role_token_signer(settings)
    if sign is not None:
        PostgresTenantStore(sessions).set_producer_token(tenant, sign(tenant))


def build_tenant_platform(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    before_offboarding: Sequence[OffboardingHook] = (),
) -> TenantPlatform:
    pulsar = PulsarAdmin(settings.pulsar_admin_url, settings.pulsar_admin_token)
    store = PostgresTenantStore(sessions)
    state = (
        FunctionStateStorage(settings.pulsar_state_storage_url)
        if settings.pulsar_state_storage_url
        else None
    )
    deployer = PipelineDeployer(pulsar, pipeline_options(settings), state)
    reconciler = Reconciler(
        translated(pulsar),
        store,
        deployer,
        token_for=role_token_signer(settings),
        before_offboarding=before_offboarding,
    )
    admin = TenantAdmin(reconciler, store, ApiKeyStore(sessions))
    return TenantPlatform(admin, store, pulsar, deployer)


@contextmanager
def tenant_admin() -> Iterator[TenantAdmin]:
    """The tenant platform in this process (reconciler, store, keys), closed afterwards."""
    settings = Settings.load()
    engine = make_engine(settings.database_url, pool_size=2)
    platform = build_tenant_platform(settings, make_sessionmaker(engine))
    try:
        yield platform.admin
    finally:
        platform.close()
        engine.dispose()
