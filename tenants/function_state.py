"""The tenant's namespace in Pulsar's function state storage (BookKeeper's table service).

Onboarding creates `<tenant>_<namespace>` before the Functions start (their instances
race to create it otherwise: docs/tenants.md, "What onboarding creates"); offboarding
removes it with the Functions' tables. The `bookkeeper` client is imported on first use:
it takes seconds to load.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable
from typing import Any


def state_namespace(tenant_id: str, namespace: str = "events") -> str:
    """The name Pulsar's Python instance gives the tenant's state namespace."""
    return f"{tenant_id}_{namespace}".replace("-", "_")


class FunctionStateStorage:
    def __init__(self, service_url: str) -> None:
        self._service_url = service_url
        self._admin: Any = None

    def connect(self) -> None:
        self._client()

    def _client(self) -> Any:
        if self._admin is None:
            admin = importlib.import_module("bookkeeper.admin.client")
            types = importlib.import_module("bookkeeper.types")
            settings = types.StorageClientSettings(service_uri=self._service_url)
            self._admin = admin.Client(storage_client_settings=settings)
        return self._admin

    @staticmethod
    def _errors() -> Any:
        return importlib.import_module("bookkeeper.common.exceptions")

    def ensure_namespace(self, tenant_id: str) -> None:
        # Existing is what was asked.
        with contextlib.suppress(self._errors().NamespaceExistsError):
            self._client().namespaces().create(namespace=state_namespace(tenant_id))

    def exists(self, tenant_id: str) -> bool:
        errors = self._errors()
        try:
            self._client().namespaces().get(namespace=state_namespace(tenant_id))
        except errors.NamespaceNotFoundError:
            return False
        return True

    def remove(self, tenant_id: str, tables: Iterable[str]) -> bool:
        """Delete the tenant's state tables and namespace; False if there was none."""
        errors = self._errors()
        if not self.exists(tenant_id):
            return False
        namespace = self._client().namespace(state_namespace(tenant_id))
        for table in tables:
            # Never created, or already removed with its function: fine either way.
            with contextlib.suppress(errors.StreamNotFoundError):
                namespace.delete(stream_name=table)
        with contextlib.suppress(errors.NamespaceNotFoundError):
            self._client().namespaces().delete(namespace=state_namespace(tenant_id))
        return True
