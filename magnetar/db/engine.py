"""One engine and one sessionmaker per process; the tenant is set per transaction.

Row-level security policies compare ``tenant_id`` with ``current_setting('magnetar.tenant')``,
which is set with ``set_config(..., true)`` so that it dies with the transaction and a pooled
connection never carries one tenant's scope into another's work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """Settings hold libpq URLs; SQLAlchemy wants the driver named."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def tenant_transaction(sessions: sessionmaker[Session], tenant_id: str) -> Iterator[Session]:
    """A session in one transaction whose row-level security scope is `tenant_id`."""
    with sessions.begin() as session:
        session.execute(text("SELECT set_config('magnetar.tenant', :t, true)"), {"t": tenant_id})
        yield session
