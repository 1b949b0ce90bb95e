"""The names of a tenant's Pulsar namespaces and topics, in one place."""

from __future__ import annotations

from dataclasses import dataclass

# A tenant's stream pipeline: one Function on its raw topic (functions.pipeline), which
# dedupes, enriches and writes PostgreSQL state in one process.
PIPELINE_FUNCTION = "pipeline"
PIPELINE_FUNCTIONS: tuple[str, ...] = (PIPELINE_FUNCTION,)


# The three Functions (and their subscriptions) of the pipeline before it was one; an
# upgrade removes them (tenants.functions_deploy).
LEGACY_FUNCTIONS: tuple[str, ...] = ("dedupe", "enrich", "materialize")


def subscription_of(function: str) -> str:
    """The subscription a pipeline Function reads its input with."""
    return f"magnetar-{function}"


@dataclass(frozen=True)
class TenantTopics:
    """The topics of one tenant's pipeline."""

    tenant: str

    @property
    def events_namespace(self) -> str:
        return f"{self.tenant}/events"

    @property
    def catalog_namespace(self) -> str:
        return f"{self.tenant}/catalog"

    def _events(self, name: str) -> str:
        return f"persistent://{self.events_namespace}/{name}"

    @property
    def raw(self) -> str:
        return self._events("raw")

    @property
    def imports(self) -> str:
        """Imported history (EventService.ImportEvents): same schema and keys as `raw`."""
        return self._events("import")

    @property
    def dlq(self) -> str:
        return self._events("dlq")

    @property
    def catalog(self) -> str:
        return f"persistent://{self.catalog_namespace}/items"
