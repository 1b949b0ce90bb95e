"""Resources a mount opens (a connection pool, Pulsar producers) closed with the gateway.

A mount returns only its service name, and `GatewayServer.stop` ends by disposing of the
engine that every mount shares (after the gRPC server has drained). Listening for that
disposal closes a mount's own resources at the right moment, without a hook of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker


def close_with_gateway(sessions: sessionmaker[Session], close: Callable[[], Any]) -> None:
    engine: Engine = sessions.kw["bind"]
    event.listen(engine, "engine_disposed", lambda _engine: close())
