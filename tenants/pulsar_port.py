"""The real `PulsarAdminPort`: `magnetar.pulsar_admin.PulsarAdmin`, its failures as domain errors.

The reconciler knows nothing of HTTP; here an admin call that fails (the broker refused,
answered 5xx, or cannot be reached) becomes `Unavailable` with the broker's reason and
HTTP status, which the gateway maps to UNAVAILABLE and the CLI prints as one line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx

from magnetar.errors import Unavailable
from magnetar.pulsar_admin import PulsarAdmin, PulsarAdminError
from tenants.ports import PulsarAdminPort


@contextmanager
def pulsar_errors(action: str) -> Iterator[None]:
    try:
        yield
    except PulsarAdminError as error:
        raise Unavailable(
            f"Pulsar refused {action}: {error}",
            reason="PULSAR_ADMIN_ERROR",
            metadata={"http_status": str(error.status), "action": action},
        ) from error
    except httpx.HTTPError as error:
        raise Unavailable(
            f"Pulsar's admin API is unreachable ({action}): {error}",
            reason="PULSAR_UNAVAILABLE",
            metadata={"action": action},
        ) from error


class _Translated:
    """Every method of the wrapped admin client, its errors translated."""

    def __init__(self, admin: PulsarAdmin) -> None:
        self._admin = admin

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._admin, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with pulsar_errors(name):
                return cast(Callable[..., Any], method)(*args, **kwargs)

        return call


def translated(admin: PulsarAdmin) -> PulsarAdminPort:
    return cast(PulsarAdminPort, _Translated(admin))
