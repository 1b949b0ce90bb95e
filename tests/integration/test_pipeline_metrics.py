"""The gateway's pipeline exporter reads counts and backlog only.

Asking for a function's status makes the worker query each instance over gRPC; the
exporter runs for every tenant every few seconds and exports no function health, so it
must not ask.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from magnetar.observability import metrics
from magnetar.pulsar_admin import PulsarAdmin
from magnetar.settings import Settings
from tests.integration.conftest import ScratchTenant

pytestmark = pytest.mark.integration


class _CountingAdmin(PulsarAdmin):
    status_calls = 0

    def function_status(self, *args: Any, **kwargs: Any) -> Any:
        type(self).status_calls += 1
        return super().function_status(*args, **kwargs)


def test_refresh_exports_every_tenant_without_asking_function_status(
    settings: Settings, unique_tenant: ScratchTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "PulsarAdmin", _CountingAdmin)
    exporter = metrics.PipelineMetrics(settings, CollectorRegistry())

    exporter.refresh()

    counted = next(f for f in exporter.collect() if f.name == "magnetar_pipeline_counted")
    assert (unique_tenant.name, 0.0) in {(s.labels["tenant"], s.value) for s in counted.samples}
    assert _CountingAdmin.status_calls == 0
