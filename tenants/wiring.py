"""The real tenant platform from settings: the one place that builds the I/O adapters.

Used by the gateway's TenantService mount and by `magnetar tenants`. The reconciler is the
only user of the Pulsar superuser token (`Settings.pulsar_admin_token_file`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from functions.deployment import PipelineOptions
from magnetar.api_key_store import ApiKeyStore
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tenants.admin import TenantAdmin
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
        translated(pulsar), store, deployer, before_offboarding=before_offboarding
    )
    admin = TenantAdmin(reconciler, store, ApiKeyStore(sessions))
    return TenantPlatform(admin, store, pulsar, deployer)
