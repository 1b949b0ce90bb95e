"""CORS for the HTTP door: which web origins may call it, per tenant (docs/clients.md, "CORS").

- A cross-origin request reaches the gRPC method only if its origin is among the allowed
  origins of the tenant its key names; otherwise PERMISSION_DENIED, `ORIGIN_NOT_ALLOWED`
  (origin and tenant in the ErrorInfo), before any call. A key naming no tenant is left to
  the gRPC layer's refusal.
- Preflights are answered for every origin; answers to a cross-origin request carry
  `Access-Control-Allow-Origin` for it.
- Allowed origins are cached `ttl_s` and served stale `stale_s` while PostgreSQL fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from gateway.answer_cache import AnswerCache, CachedLookup
from magnetar.api_keys import bearer_token, parse_key
from magnetar.errors import MagnetarError, PermissionDenied

PREFLIGHT_MAX_AGE_S = 600
ALLOWED_METHODS = "POST"
ALLOWED_HEADERS = "authorization, content-type"


class OriginSource(Protocol):
    """The allowed origins of a tenant (empty for none); blocking (run in a worker thread)."""

    def allowed_origins(self, tenant_id: str) -> frozenset[str]: ...


def cross_origin(headers: Mapping[str, str]) -> str | None:
    """The request's `Origin` when it is another site's, None for same-origin or none."""
    origin = headers.get("origin")
    if origin is None:
        return None
    # A browser sends the host it connected to in `Host`; a page of that host is ours.
    if urlsplit(origin).netloc.lower() == headers.get("host", "").lower():
        return None
    return origin


def key_tenant(authorization: str | None) -> str | None:
    """The tenant an `Authorization: Bearer mgk.<tenant>.…` header names, None otherwise."""
    try:
        return parse_key(bearer_token(authorization)).tenant_id
    except MagnetarError:
        return None


def allow_headers(origin: str) -> dict[str, str]:
    """What every answer to a cross-origin request carries."""
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        **allow_headers(origin),
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
    }


def origin_refused(origin: str, tenant_id: str) -> PermissionDenied:
    return PermissionDenied(
        f"origin {origin!r} may not call tenant {tenant_id!r}'s keys from a browser; the "
        "tenant's admin adds it with `magnetar tenants update --allowed-origin`",
        reason="ORIGIN_NOT_ALLOWED",
        metadata={"origin": origin, "tenant_id": tenant_id},
    )


class OriginPolicy:
    """Decides whether a cross-origin request may go on, from cached allowed origins."""

    def __init__(
        self,
        source: OriginSource,
        *,
        ttl_s: float = 5.0,
        stale_s: float = 600.0,
        max_tenants: int = 10_000,
        max_lookups: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        cache: AnswerCache[str, frozenset[str]] = AnswerCache(max_tenants, ttl_s, stale_s)
        self._origins: CachedLookup[str, frozenset[str]] = CachedLookup(
            (cache,),
            lambda _: cache,
            run=asyncio.to_thread,
            clock=clock,
            what="allowed origins",
            max_lookups=max_lookups,
        )

    async def check(self, origin: str, authorization: str | None) -> None:
        """Return if `origin` may call with this key; PermissionDenied (or, when the store
        fails with nothing cached, Unavailable) otherwise."""
        tenant_id = key_tenant(authorization)
        if tenant_id is None:
            return
        allowed = await self._origins.get(
            tenant_id, lambda: self._source.allowed_origins(tenant_id)
        )
        if origin not in allowed:
            raise origin_refused(origin, tenant_id)
