"""Onboarding and offboarding as an idempotent reconciler over ports.

The desired state is recorded before anything else; each step changes only what differs and
is recorded DONE, so a retry resumes at the first step not done. Each operation holds the
tenant's lease; a concurrent creation of one id gets AlreadyExists. Pure logic over
`tenants.ports`; no I/O of its own (docs/tenants.md, "Onboarding: an idempotent reconciler";
the role token, docs/kubernetes.md, "Topology")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from magnetar.api_keys import Scope, mint_key
from magnetar.errors import (
    AlreadyExists,
    FailedPrecondition,
    MagnetarError,
    NotFound,
    Unavailable,
)
from magnetar.pulsar_tokens import tenant_role
from magnetar.topics import TenantTopics
from tenants import pulsar_setup
from tenants.model import (
    ONBOARDING_STEPS,
    FunctionHealth,
    IssuedKey,
    Onboarded,
    StepState,
    SubscriptionBacklog,
    TenantRecord,
    TenantSpec,
    TenantState,
    TenantView,
)
from tenants.plans import Quotas
from tenants.ports import (
    FunctionDeployer,
    LeaseTaken,
    OffboardingHook,
    PendingKey,
    PulsarAdminPort,
    TenantStore,
)

log = logging.getLogger(__name__)

FIRST_INGEST_KEY = "first ingest key (CreateTenant)"
FIRST_READ_KEY = "first read key (CreateTenant)"
# How long Update and Delete wait for a tenant's lease before answering UNAVAILABLE.
BUSY_WAIT_S = 30.0


def _tenant_missing(tenant_id: str) -> NotFound:
    return NotFound(f"tenant {tenant_id!r} does not exist", reason="TENANT_NOT_FOUND")


def _quotas(spec: TenantSpec) -> Quotas:
    return spec.quotas or pulsar_setup.UNTHROTTLED


def _busy(tenant_id: str) -> Unavailable:
    return Unavailable(
        f"tenant {tenant_id!r} is being changed by another call; retry shortly",
        reason="TENANT_BUSY",
    )


class Reconciler:
    def __init__(
        self,
        pulsar: PulsarAdminPort,
        store: TenantStore,
        functions: FunctionDeployer,
        *,
        role_for: Callable[[str], str] = tenant_role,
        token_for: Callable[[str], str] | None = None,
        before_offboarding: Sequence[OffboardingHook] = (),
    ) -> None:
        self._pulsar = pulsar
        self._store = store
        self._functions = functions
        self._role_for = role_for
        # Signs the token of `role_for(tenant_id)`; None: no signing key (producers then use
        # the superuser token, an explicit opt-out: Settings.producer_credentials).
        self._token_for = token_for
        self._before_offboarding = tuple(before_offboarding)

    # -- onboarding -------------------------------------------------------------------

    def onboard(self, spec: TenantSpec) -> Onboarded:
        """Create the tenant everywhere, or resume a creation that stopped part way."""
        try:
            with self._store.lease(spec.tenant_id):
                record = self._store.insert(spec)
                if record is None:
                    record = self._resumable(spec)
                return self._provision(record)
        except LeaseTaken:
            raise self._exists(spec.tenant_id) from None

    def _exists(self, tenant_id: str) -> AlreadyExists:
        return AlreadyExists(f"tenant {tenant_id!r} already exists", reason="TENANT_EXISTS")

    def _resumable(self, spec: TenantSpec) -> TenantRecord:
        """The existing record, if it is an unfinished creation of this very spec."""
        record = self._store.get(spec.tenant_id)
        unfinished = record is not None and record.state in (
            TenantState.PROVISIONING,
            TenantState.FAILED,
        )
        if record is None or not unfinished or record.spec != spec:
            raise self._exists(spec.tenant_id)
        log.info("resuming onboarding of %s", spec.tenant_id)
        return record

    def _provision(self, record: TenantRecord) -> Onboarded:
        tenant_id = record.tenant_id
        if record.state is not TenantState.PROVISIONING:
            self._store.set_state(tenant_id, TenantState.PROVISIONING)
        actions: dict[str, Callable[[], None]] = {
            "pulsar_tenant": lambda: pulsar_setup.ensure_tenant(self._pulsar, tenant_id),
            "namespaces": lambda: pulsar_setup.ensure_namespaces(
                self._pulsar, TenantTopics(tenant_id), _quotas(record.spec)
            ),
            "pulsar_role": lambda: self._grant_role(tenant_id),
            "topics": lambda: pulsar_setup.ensure_topics(self._pulsar, TenantTopics(tenant_id)),
            "schemas": lambda: pulsar_setup.ensure_schemas(self._pulsar, TenantTopics(tenant_id)),
            "functions": lambda: self._functions.deploy(tenant_id),
        }
        for step in ONBOARDING_STEPS[:-1]:
            if not record.done(step):
                self._run_step(tenant_id, step, actions[step])
        return self._issue_first_keys(tenant_id)

    def _grant_role(self, tenant_id: str) -> None:
        pulsar_setup.ensure_role(self._pulsar, TenantTopics(tenant_id), self._role_for(tenant_id))
        self._store_producer_token(tenant_id)

    def _store_producer_token(self, tenant_id: str) -> None:
        if self._token_for is not None:
            self._store.set_producer_token(tenant_id, self._token_for(tenant_id))

    def _run_step(self, tenant_id: str, step: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:
            # Recorded for GetTenant, then raised: the caller learns that this step failed
            # and that retrying resumes here. Not a hidden failure: it is the answer.
            message = f"{type(error).__name__}: {error}"[:1000]
            self._store.set_step(tenant_id, step, StepState.FAILED, message)
            self._store.set_state(tenant_id, TenantState.FAILED)
            log.warning("onboarding %s: step %s failed: %s", tenant_id, step, message)
            if isinstance(error, MagnetarError):
                raise
            raise Unavailable(
                f"onboarding {tenant_id!r} stopped at step {step!r} ({message}); "
                "CreateTenant again with the same request resumes from there",
                reason="PROVISIONING_STEP_FAILED",
                metadata={"step": step},
            ) from error
        self._store.set_step(tenant_id, step, StepState.DONE)

    def _issue_first_keys(self, tenant_id: str) -> Onboarded:
        ingest = PendingKey(mint_key(tenant_id), frozenset({Scope.INGEST}), FIRST_INGEST_KEY)
        read = PendingKey(mint_key(tenant_id), frozenset({Scope.READ}), FIRST_READ_KEY)
        try:
            record, (ingest_stored, read_stored) = self._store.activate(tenant_id, [ingest, read])
        except Exception as error:
            self._store.set_step(tenant_id, "keys", StepState.FAILED, str(error)[:1000])
            self._store.set_state(tenant_id, TenantState.FAILED)
            raise
        return Onboarded(
            record,
            IssuedKey(ingest.minted, ingest_stored),
            IssuedKey(read.minted, read_stored),
        )

    # -- reading ----------------------------------------------------------------------

    def record(self, tenant_id: str) -> TenantRecord:
        record = self._store.get(tenant_id)
        if record is None:
            raise _tenant_missing(tenant_id)
        return record

    def view(self, tenant_id: str) -> TenantView:
        """The record with its functions' status and the backlog of every subscription."""
        record = self.record(tenant_id)
        functions: list[FunctionHealth] = []
        backlogs: list[SubscriptionBacklog] = []
        if record.done("namespaces"):
            functions = self._functions.status(tenant_id)
            backlogs = self._backlogs(TenantTopics(tenant_id))
        return TenantView(record, functions, backlogs)

    def _backlogs(self, topics: TenantTopics) -> list[SubscriptionBacklog]:
        existing = set(self._pulsar.topics(topics.events_namespace))
        existing |= set(self._pulsar.topics(topics.catalog_namespace))
        found = []
        for topic, partitioned in (
            (topics.raw, True),
            (topics.dlq, False),
            (topics.catalog, False),
        ):
            if topic not in existing:
                continue
            stats = self._pulsar.topic_stats(topic, partitioned=partitioned)
            for name, subscription in sorted((stats.get("subscriptions") or {}).items()):
                found.append(
                    SubscriptionBacklog(topic, name, int(subscription.get("msgBacklog", 0)))
                )
        return found

    # -- changing ---------------------------------------------------------------------

    def update(self, spec: TenantSpec) -> TenantRecord:
        """Record the new desired state and apply its policies to the Pulsar namespaces."""
        try:
            with self._store.lease(spec.tenant_id, wait_s=BUSY_WAIT_S):
                record = self.record(spec.tenant_id)
                if record.state is TenantState.DELETING:
                    raise _tenant_missing(spec.tenant_id)
                record = self._store.update_spec(spec)
                if record.done("pulsar_role"):
                    # A tenant onboarded before producer tokens existed gets its token here.
                    self._store_producer_token(spec.tenant_id)
                if record.done("namespaces"):
                    # Not yet created namespaces get the new policies when onboarding resumes.
                    pulsar_setup.ensure_namespaces(
                        self._pulsar, TenantTopics(spec.tenant_id), _quotas(spec)
                    )
                return record
        except LeaseTaken:
            raise _busy(spec.tenant_id) from None

    def issue_producer_token(self, tenant_id: str) -> bool:
        """Sign and store the tenant's producer token if its role exists; False if not yet
        (onboarding stores it when it reaches the role step)."""
        if self._token_for is None:
            raise FailedPrecondition(
                "this admin plane has no token signing key "
                "(pulsar_token_secret_key_file), so it cannot sign producer tokens",
                reason="NO_SIGNING_KEY",
            )
        try:
            with self._store.lease(tenant_id, wait_s=BUSY_WAIT_S):
                record = self.record(tenant_id)
                if record.state is TenantState.DELETING or not record.done("pulsar_role"):
                    return False
                self._store_producer_token(tenant_id)
                return True
        except LeaseTaken:
            raise _busy(tenant_id) from None

    # -- offboarding ------------------------------------------------------------------

    def offboard(self, tenant_id: str) -> list[str]:
        """Remove the tenant everywhere; safe to repeat, resumes after a crash."""
        try:
            with self._store.lease(tenant_id, wait_s=BUSY_WAIT_S):
                self.record(tenant_id)
                self._store.set_state(tenant_id, TenantState.DELETING)
                for hook in self._before_offboarding:
                    hook(tenant_id)
                removed = self._undeploy(tenant_id)
                removed += self._remove_pulsar(tenant_id)
                removed += self._store.purge(tenant_id)
                return removed
        except LeaseTaken:
            raise _busy(tenant_id) from None

    def _undeploy(self, tenant_id: str) -> list[str]:
        if tenant_id not in self._pulsar.tenants():
            return []
        return self._functions.undeploy(tenant_id)

    def _remove_pulsar(self, tenant_id: str) -> list[str]:
        if tenant_id not in self._pulsar.tenants():
            return []
        removed = []
        for namespace in self._pulsar.namespaces(tenant_id):
            topics = self._pulsar.topics(namespace)
            # Force-deleting a namespace removes its topics, subscriptions and schemas.
            self._pulsar.delete_namespace(namespace)
            removed += [f"topic {topic}" for topic in topics if "-partition-" not in topic]
            removed.append(f"namespace {namespace}")
        # The admin client rides out the broker's metadata race on deletes.
        self._pulsar.delete_tenant(tenant_id)
        removed.append(f"pulsar tenant {tenant_id}")
        return removed
