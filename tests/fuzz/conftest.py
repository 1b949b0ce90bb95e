"""Fuzz tests that need the real stack reuse the integration suite's session fixtures."""

from __future__ import annotations

from tests.integration.conftest import pulsar_admin, settings

__all__ = ["pulsar_admin", "settings"]
