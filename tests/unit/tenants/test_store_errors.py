"""A database failure reaches the caller as its kind and a reason code, never as the
database's own text (which names hosts, roles and SQL); the text goes to the log."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from tenants.store import _unavailable

DETAIL = (
    'connection to server at "10.1.2.3", port 5432 failed: FATAL: password authentication '
    'failed for user "magnetar_app"'
)


def test_a_database_failure_is_reported_without_the_databases_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tenants.store"):
        error = _unavailable(OperationalError("SELECT 1", {}, Exception(DETAIL)))
    assert error.reason == "DATABASE_UNAVAILABLE"
    assert error.message == "PostgreSQL is unavailable: OperationalError"
    assert "10.1.2.3" in caplog.text
