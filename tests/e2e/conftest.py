"""End-to-end fixtures: the real stack (started if down), the real pipeline on the functions
worker, and a real gateway; tests act on the platform through gRPC only."""

from __future__ import annotations

from tests.integration.conftest import admin_key, gateway, key_store, pulsar_admin, settings

__all__ = ["admin_key", "gateway", "key_store", "pulsar_admin", "settings"]
