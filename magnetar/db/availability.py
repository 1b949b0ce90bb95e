"""PostgreSQL failures that a retry may fix, as `Unavailable` (UNAVAILABLE on the wire).

Connection refused or lost, a pool out of connections, a lock or statement timeout: the
request was fine and the database could not serve it now. Anything else (a bug, a
constraint) propagates unchanged and ends as INTERNAL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy.exc

from magnetar.errors import Unavailable

_TRANSIENT = (
    # psycopg_pool's PoolTimeout and PoolClosed are OperationalErrors too.
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    # SQLAlchemy's pool gave up waiting for a connection.
    sqlalchemy.exc.TimeoutError,
)


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    try:
        yield
    except _TRANSIENT as error:
        raise Unavailable(
            f"PostgreSQL is unavailable: {type(error).__name__}",
            reason="DATABASE_UNAVAILABLE",
        ) from error
