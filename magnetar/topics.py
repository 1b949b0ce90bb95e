"""The names of a tenant's Pulsar namespaces and topics, in one place."""

from __future__ import annotations

from dataclasses import dataclass


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
    def deduped(self) -> str:
        return self._events("deduped")

    @property
    def enriched(self) -> str:
        return self._events("enriched")

    @property
    def dlq(self) -> str:
        return self._events("dlq")

    @property
    def catalog(self) -> str:
        return f"persistent://{self.catalog_namespace}/items"
